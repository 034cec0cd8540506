"""Jobs run end to end: a real Celery worker process, fake ComfyUI nodes on real ports."""

from __future__ import annotations

import pytest
from django.utils import timezone
from PIL import Image

from generations import services
from generations.models import Job
from nodes.models import Node
from nodes.services import node_resume
from tests.generations.conftest import register, wait_finished
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_jobs_on_two_nodes_all_succeed_and_use_both(worker, fakes, user):
    nodes = [register(fakes(step_time=0.01), f"gpu-{i}") for i in range(2)]

    jobs = [services.job_create(prompt=txt2img(), owner=user) for _ in range(20)]

    finished = wait_finished(jobs, timeout=60)
    assert {job.state for job in finished} == {Job.State.SUCCEEDED}
    assert {job.node_id for job in finished} == {node.id for node in nodes}
    for node in nodes:
        node.refresh_from_db()
        assert node.running == 0


def test_a_job_stores_its_image_with_size_and_hash(worker, fakes, user):
    register(fakes(), "gpu")

    [job] = wait_finished([services.job_create(prompt=txt2img(size=96), owner=user)])

    assert job.state == Job.State.SUCCEEDED, job.error
    [output] = job.outputs.all()
    assert (output.node_title, output.kind, output.width, output.height) == (
        "Save image [images]",
        "output",
        96,
        96,
    )
    with output.file.open("rb") as fh, Image.open(fh) as image:
        assert image.size == (96, 96)
    assert len(output.sha256) == 64 and output.size > 0
    assert job.attempts == 1 and job.progress_value == job.progress_max == 4


def test_a_resumed_node_takes_the_waiting_jobs_at_once(worker, fakes, user):
    node = register(fakes(), "gpu", status=Node.Status.DRAINING, last_seen_at=timezone.now())
    jobs = [services.job_create(prompt=txt2img(), owner=user) for _ in range(3)]
    assert set(Job.objects.values_list("state", flat=True)) == {Job.State.QUEUED}

    node_resume(node=node)

    # No beat runs here: without the resume dispatching, the jobs would wait for a sweep that never comes.
    finished = wait_finished(jobs, timeout=15)
    assert {job.state for job in finished} == {Job.State.SUCCEEDED}
