"""A claim hands the job over with its lease: the first executor writes nothing before it posts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generations import services
from generations.models import Job
from nodes.dispatch import claim_jobs
from nodes.models import Node
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db


@pytest.fixture
def claimed(user) -> Job:
    Node.objects.create(name="gpu", base_url="http://127.0.0.1:9", status=Node.Status.IDLE)
    Job.objects.create(prompt=txt2img(), owner=user)
    [(job, _node)] = claim_jobs()
    return job


def test_a_claim_grants_the_lease_and_stores_the_ids_before_any_post(claimed):
    row = Job.objects.get(id=claimed.id)
    assert row.state == Job.State.ASSIGNED and row.attempts == 1
    assert row.worker.startswith("handed-over:") and row.worker == claimed.worker
    assert row.prompt_id == claimed.prompt_id != "" and row.client_id == claimed.client_id != ""
    assert row.heartbeat_at == row.assigned_at == claimed.assigned_at
    assert set(row.hand_over(row.node, row.assigned_at)) == set(Job.HANDED_OVER)


def test_the_executor_named_by_the_claim_takes_the_lease_without_a_write(claimed):
    with CaptureQueriesContext(connection) as queries:
        job, posted = services.job_lease(job_id=claimed.id, worker="w:1:a", handed_over=claimed.worker)
    assert not posted and job.prompt_id == claimed.prompt_id and job.node.name == "gpu"
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT"]


def test_a_handed_over_lease_is_void_once_the_reaper_gives_the_job_to_another_executor(claimed):
    stale = timezone.now() - timedelta(hours=1)
    Job.objects.filter(id=claimed.id).update(heartbeat_at=stale, assigned_at=stale)
    assert services.jobs_reap() == [claimed.id]

    assert services.job_lease(job_id=claimed.id, worker="w:1:a", handed_over=claimed.worker) is None
    job, posted = services.job_lease(job_id=claimed.id, worker="w:2:b")
    assert posted and job.worker == "w:2:b" and job.prompt_id == claimed.prompt_id and job.attempts == 1


def test_a_handed_over_lease_is_void_once_the_job_ended(claimed):
    services.job_fail(job=claimed, error="gone")
    assert services.job_lease(job_id=claimed.id, worker="w:1:a", handed_over=claimed.worker) is None


def test_the_first_heartbeat_names_the_executor_and_a_lost_lease_stays_lost(claimed):
    job, _ = services.job_lease(job_id=claimed.id, worker="w:1:a", handed_over=claimed.worker)
    assert services.job_heartbeat(job=job, worker="w:1:a")
    assert job.worker == Job.objects.get(id=job.id).worker == "w:1:a"

    Job.objects.filter(id=job.id).update(worker="w:2:b")  # taken over
    assert not services.job_heartbeat(job=job, worker="w:1:a")
    assert Job.objects.get(id=job.id).worker == "w:2:b"


def test_a_job_claimed_as_it_is_created_comes_back_as_claimed(user):
    Node.objects.create(name="gpu", base_url="http://127.0.0.1:9", status=Node.Status.IDLE)
    job = services.job_create(prompt=txt2img(), owner=user)
    row = Job.objects.get(id=job.id)
    assert [getattr(job, name) for name in Job.HANDED_OVER] == [getattr(row, name) for name in Job.HANDED_OVER]
    assert job.state == Job.State.ASSIGNED and job.attempts == 1 and job.worker.startswith("handed-over:")


def test_a_handed_over_lease_taken_late_is_renewed_before_the_post(claimed, settings):
    long_ago = timezone.now() - timedelta(seconds=settings.COMFYROUTER_STALE_AFTER - 1)
    Job.objects.filter(id=claimed.id).update(heartbeat_at=long_ago)

    job, posted = services.job_lease(job_id=claimed.id, worker="w:1:a", handed_over=claimed.worker)
    row = Job.objects.get(id=claimed.id)
    assert not posted and job.worker == row.worker == "w:1:a" and row.heartbeat_at > long_ago
