"""Heartbeat threads outlive a job: the next job's heartbeat reuses a thread and its database connection."""

from __future__ import annotations

import threading

import pytest
from django.db.backends.signals import connection_created

from generations import executor
from generations.models import Job
from nodes.dispatch import claim_jobs
from tests.generations.conftest import register
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heartbeat_connections() -> list[str]:
    """The names of the heartbeat threads that open a database connection, one entry per connection."""
    opened: list[str] = []

    def record(sender, connection, **kwargs) -> None:
        if (name := threading.current_thread().name).startswith("heartbeat"):
            opened.append(name)

    connection_created.connect(record, weak=False)
    yield opened
    connection_created.disconnect(record)


def test_jobs_run_one_after_another_share_a_heartbeat_connection(
    fakes, user, engine_settings, heartbeat_connections
):
    # 8 steps of 0.1 s: past LIVE_WRITE_SECONDS, so each job's heartbeat writes its start to the database.
    register(fakes(step_time=0.1), "gpu")

    for _ in range(2):
        Job.objects.create(prompt=txt2img(steps=8), owner=user)
        [(job, _node)] = claim_jobs()
        executor.execute(job.id, handed_over=job.worker)
        job.refresh_from_db()
        assert job.state == Job.State.SUCCEEDED and job.started_at is not None

    # At most one: a heartbeat thread of an earlier job in this process may have its connection open already.
    assert len(heartbeat_connections) <= 1
