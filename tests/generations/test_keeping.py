"""An executor whose job's end refilled the freed slot runs the new job itself, without a broker message."""

from __future__ import annotations

import pytest
from celery.worker import state as worker_state

from generations import services
from generations.models import Job
from generations.tasks import execute_job
from nodes.dispatch import claim_jobs
from nodes.models import Node
from tests.generations.conftest import register, wait_finished, wait_running
from tests.generations.graphs import txt2img


@pytest.fixture
def node(worker_env) -> Node:
    # No fake behind it: every job here ends before its executor would reach the node.
    return Node.objects.create(name="gpu", base_url="http://127.0.0.1:9", status=Node.Status.IDLE, capacity=1)


def cancelled_while_claimed(user) -> Job:
    """A queued job whose cancel came as it was claimed: its executor ends it without calling the node."""
    return Job.objects.create(prompt=txt2img(), owner=user, cancel_requested=True)


def test_a_job_claimed_by_an_end_inside_the_block_is_kept_not_sent(node, user, sent):
    first, waiting = cancelled_while_claimed(user), Job.objects.create(prompt=txt2img(), owner=user)
    [(first, _node)] = claim_jobs()

    with services.keeping_a_job() as kept:
        assert services.job_cancelled(job=first)
    waiting.refresh_from_db()
    assert kept == [(str(waiting.id), waiting.worker)] and waiting.state == Job.State.ASSIGNED
    assert sent == []

    services.job_cancelled(job=waiting)  # outside the block: a claim is sent to a worker again
    third = Job.objects.create(prompt=txt2img(), owner=user)
    services.dispatch_now()
    third.refresh_from_db()
    assert sent == [(execute_job.name, [str(third.id), third.worker])]


def test_a_job_kept_by_a_caller_that_fails_goes_to_a_worker(node, user, sent):
    first, waiting = cancelled_while_claimed(user), Job.objects.create(prompt=txt2img(), owner=user)
    [(first, _node)] = claim_jobs()

    with pytest.raises(RuntimeError), services.keeping_a_job() as kept:
        services.job_cancelled(job=first)
        raise RuntimeError("the executor broke after the job's end")
    waiting.refresh_from_db()
    assert kept == [(str(waiting.id), waiting.worker)]
    assert sent == [(execute_job.name, [str(waiting.id), waiting.worker])]


def test_the_execute_task_runs_each_job_its_ends_claimed_in_turn(node, user, sent):
    jobs = [cancelled_while_claimed(user) for _ in range(3)]
    [(first, _node)] = claim_jobs()

    execute_job(str(first.id), first.worker)

    assert [Job.objects.get(id=job.id).state for job in jobs] == [Job.State.CANCELLED] * 3
    assert sent == []


def test_a_stopping_worker_sends_the_job_it_kept_to_another_worker(node, user, sent, monkeypatch):
    first, second = cancelled_while_claimed(user), cancelled_while_claimed(user)
    [(first, _node)] = claim_jobs()
    monkeypatch.setattr(worker_state, "should_stop", 0)  # a warm shutdown was asked for

    execute_job(str(first.id), first.worker)

    second.refresh_from_db()
    assert Job.objects.get(id=first.id).state == Job.State.CANCELLED
    assert sent == [(execute_job.name, [str(second.id), second.worker])]


def test_a_worker_busy_with_a_chain_of_jobs_leaves_other_jobs_to_a_free_worker(engine, fakes, user):
    # A worker whose every thread runs a node's chain of jobs must not take a message it cannot start: the
    # job would wait until the queue ran dry, its node idle, while another worker had a free thread.
    engine(concurrency=1)
    slow = register(fakes(step_time=0.25), "slow", capacity=1)
    chain = [Job.objects.create(prompt=txt2img(steps=4), owner=user) for _ in range(5)]  # about 1 s each
    services.dispatch_now()
    wait_running(chain[0])
    fast = register(fakes(), "fast", capacity=1)
    [(job, _node)] = claim_jobs(node_id=fast.id)
    execute_job.delay(str(job.id), job.worker)  # as dispatch_now sends it, with the node's row written
    engine(concurrency=1)  # a free thread, ready after the busy worker could have taken the message

    [job] = wait_finished([job], timeout=20)
    assert job.state == Job.State.SUCCEEDED and job.node == fast
    # It did not wait for the chain on the other node to end.
    unfinished = Job.objects.filter(node=slow).exclude(state__in=Job.FINISHED_STATES)
    assert unfinished.exists(), "the job ran only once the busy worker's chain had ended"
