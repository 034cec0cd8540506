"""A job's end teaches the scheduler: the node's moving-average job time and the checkpoint it left loaded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from generations import services
from generations.models import Job
from nodes.models import Node
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db


def finish_one(node: Node, user, seconds: float) -> Node:
    job = Job.objects.create(prompt=txt2img(), owner=user, state=Job.State.RUNNING, node=node,
                             started_at=timezone.now() - timedelta(seconds=seconds))  # fmt: skip
    Node.objects.filter(id=node.id).update(running=1)
    assert services.job_succeed(job=job, outputs=[])
    node.refresh_from_db()
    return node


def test_the_first_job_sets_the_average_and_later_ones_move_it_by_a_fifth(user):
    node = Node.objects.create(name="gpu", base_url="http://127.0.0.1:9", status=Node.Status.BUSY)
    assert node.avg_job_seconds is None

    node = finish_one(node, user, 10.0)
    assert node.avg_job_seconds == pytest.approx(10.0, abs=0.05) and node.running == 0
    assert node.loaded_checkpoint == "v1-5-pruned-emaonly.safetensors"
    node = finish_one(node, user, 20.0)
    assert node.avg_job_seconds == pytest.approx(12.0, abs=0.05)
