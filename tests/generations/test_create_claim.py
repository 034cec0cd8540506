"""A job created while nothing else is queued takes a free slot as it is inserted; otherwise it waits its turn."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations import services
from generations.models import Job
from nodes.models import Node
from tests.generations.graphs import txt2img


@pytest.fixture
def node(worker_env) -> Node:
    # No fake behind it and no worker: these tests stop at the hand-over.
    return Node.objects.create(name="gpu", base_url="http://127.0.0.1:9", status=Node.Status.IDLE, capacity=1)


def test_a_job_created_with_nothing_queued_is_inserted_assigned_to_the_free_node(node, user, sent):
    with CaptureQueriesContext(connection) as queries:
        job = services.job_create(prompt=txt2img(), owner=user)

    writes = ('INSERT INTO "generations_job"', 'UPDATE "generations_job"')
    job_writes = [q["sql"].split(" (")[0] for q in queries if q["sql"].startswith(writes)]
    assert job_writes == ['INSERT INTO "generations_job"']  # assigned in its INSERT, no UPDATE after
    row = Job.objects.get(id=job.id)
    assert (row.state, row.node_id, row.attempts) == (Job.State.ASSIGNED, node.id, 1)
    assert row.worker.startswith("handed-over:") and row.prompt_id and row.client_id
    assert row.assigned_at >= row.created_at
    assert (job.state, job.worker) == (row.state, row.worker)  # the caller's copy is the row
    node.refresh_from_db()
    assert node.running == 1
    assert sent == [("generations.tasks.execute_job", [str(job.id), row.worker])]


def test_a_new_job_waits_behind_a_queued_one_for_the_free_slot(node, user, sent):
    ahead = Job.objects.create(prompt=txt2img(), owner=user)  # queued before the slot freed up

    job = services.job_create(prompt=txt2img(), owner=user)

    ahead.refresh_from_db()
    assert (ahead.state, ahead.node_id) == (Job.State.ASSIGNED, node.id)
    assert Job.objects.get(id=job.id).state == Job.State.QUEUED
    assert [args[0] for _task, args in sent] == [str(ahead.id)]


def test_a_new_job_with_no_free_slot_is_queued(node, user, sent):
    Node.objects.filter(id=node.id).update(running=1)

    job = services.job_create(prompt=txt2img(), owner=user)

    assert Job.objects.get(id=job.id).state == Job.State.QUEUED and sent == []
