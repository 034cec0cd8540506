"""A job's end is written once even when another writer moves the row (assigned -> running) meanwhile."""

from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction
from django.utils import timezone

from generations import services
from generations.models import Job
from nodes.models import Node
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(target) -> tuple[threading.Thread, dict]:
    """Run `target` on a thread of its own (its own database connection), closing that connection after."""
    result: dict = {}

    def run():
        try:
            result["value"] = target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_an_end_racing_the_start_write_still_succeeds_the_job_and_frees_the_slot(user):
    node = Node.objects.create(name="gpu", base_url="http://127.0.0.1:9", status=Node.Status.BUSY, running=1)
    job = Job.objects.create(prompt=txt2img(), owner=user, state=Job.State.ASSIGNED, node=node,
                             assigned_at=timezone.now(), worker="w")  # fmt: skip
    started, finish = threading.Event(), threading.Event()

    def write_start():
        # The heartbeat thread's write, held uncommitted while the executor's end begins.
        with transaction.atomic():
            Job.objects.filter(id=job.id).update(state=Job.State.RUNNING, started_at=timezone.now())
            started.set()
            finish.wait(5)

    writer, _ = in_thread(write_start)
    assert started.wait(5)
    ender, ended = in_thread(lambda: services.job_succeed(job=Job.objects.get(id=job.id), outputs=[]))
    ender.join(0.3)  # the end now waits for the start's lock
    finish.set()
    writer.join(5)
    ender.join(5)

    assert ended["value"] is True
    job.refresh_from_db()
    node.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert node.running == 0


def test_an_executor_that_lost_its_job_to_another_node_cannot_end_it(user):
    first = Node.objects.create(name="gpu-a", base_url="http://127.0.0.1:9", status=Node.Status.BUSY)
    second = Node.objects.create(name="gpu-b", base_url="http://127.0.0.1:8", status=Node.Status.BUSY, running=1)
    job = Job.objects.create(prompt=txt2img(), owner=user, state=Job.State.ASSIGNED, node=first,
                             assigned_at=timezone.now(), worker="w")  # fmt: skip
    stale = Job.objects.get(id=job.id)  # as the first executor holds it
    # Requeued (node a lost) and claimed again by node b, whose executor now runs it.
    Job.objects.filter(id=job.id).update(node=second, worker="w2")

    assert services.job_fail(job=stale, error="node a lost") is False
    assert Job.objects.get(id=job.id).state == Job.State.ASSIGNED
    assert Node.objects.get(id=second.id).running == 1

    assert services.job_succeed(job=Job.objects.get(id=job.id), outputs=[]) is True
    assert Job.objects.get(id=job.id).state == Job.State.SUCCEEDED
    assert Node.objects.get(id=second.id).running == 0
