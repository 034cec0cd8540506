"""A node's next prompt follows its events on the socket the last one ended on: no WebSocket handshake per job."""

from __future__ import annotations

import pytest

from generations import executor
from generations.models import Job
from nodes.dispatch import claim_jobs
from tests.generations.conftest import register
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def run_one(user, **prompt) -> Job:
    Job.objects.create(prompt=txt2img(**prompt), owner=user)
    [(job, _node)] = claim_jobs()
    executor.execute(job.id, handed_over=job.worker)
    job.refresh_from_db()
    return job


def test_jobs_on_a_node_one_after_another_share_one_event_socket(fakes, user, engine_settings):
    fake = fakes()
    register(fake, "gpu")

    jobs = [run_one(user, seed=seed) for seed in range(3)]

    assert [job.state for job in jobs] == [Job.State.SUCCEEDED] * 3
    assert all(job.outputs.count() == 1 for job in jobs)
    assert fake.requests_per_path["/ws"] == 1
    assert fake.requests_per_path["/prompt"] == 3


def test_a_kept_socket_that_the_node_closed_is_replaced_and_the_job_runs(fakes, user, engine_settings):
    fake = fakes()
    register(fake, "gpu")
    assert run_one(user, seed=1).state == Job.State.SUCCEEDED

    fake.restart()  # drops every socket, the kept one included
    job = run_one(user, seed=2)

    assert job.state == Job.State.SUCCEEDED
    assert job.attempts == 1
    assert fake.requests_per_path["/ws"] >= 1


def test_the_socket_of_a_failed_prompt_is_not_kept(fakes, user, engine_settings):
    fake = fakes()
    register(fake, "gpu")
    fake.configure(fault={"kind": "runtime_error", "node": "3", "count": 1})
    assert run_one(user, seed=1).state == Job.State.FAILED

    assert run_one(user, seed=2).state == Job.State.SUCCEEDED

    assert fake.requests_per_path["/ws"] == 2
