"""Cancel: a queued job at once, a running one by a targeted interrupt, a pending one out of the node's queue."""

from __future__ import annotations

import pytest

from generations import services
from generations.models import Job
from nodes.models import Node
from tests.generations.conftest import register, sweep_until_finished, wait_finished, wait_running, wait_until
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_queued_job_is_cancelled_at_once_without_a_node(worker_env, user):
    job = services.job_create(prompt=txt2img(), owner=user)

    services.job_cancel(job=job)

    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and job.node is None and job.finished_at is not None
    assert job.error == "Cancelled before it started."


def test_a_running_job_gets_a_targeted_interrupt_and_ends_cancelled(engine, fakes, user):
    engine()
    fake = fakes(step_time=0.1, previews=False)
    register(fake, "gpu")
    job = wait_running(services.job_create(prompt=txt2img(steps=100), owner=user))

    services.job_cancel(job=job)

    [job] = wait_finished([job], timeout=5)
    assert job.state == Job.State.CANCELLED and job.error == "Cancelled while it ran."
    assert {"prompt_id": job.prompt_id, "effective": True} in fake.interrupts
    assert all(hit["prompt_id"] == job.prompt_id for hit in fake.interrupts)
    assert not job.outputs.exists()
    assert Node.objects.get(name="gpu").running == 0


def test_a_job_pending_on_the_node_is_deleted_from_its_queue_and_never_runs(engine, fakes, user):
    engine()
    fake = fakes(step_time=0.05, previews=False)
    register(fake, "gpu", capacity=2)
    first = services.job_create(prompt=txt2img(steps=40), owner=user)
    wait_running(first)
    second = services.job_create(prompt=txt2img(steps=40), owner=user)
    wait_until(lambda: fake.prompts_received == 2, timeout=10, what="the second prompt on the node")
    second.refresh_from_db()
    assert second.state == Job.State.ASSIGNED
    assert [item[1] for item in fake.rt.queue.pending()] == [second.prompt_id]

    services.job_cancel(job=second)

    [second] = wait_finished([second], timeout=5)
    assert second.state == Job.State.CANCELLED
    assert fake.rt.queue.pending() == []
    [first] = wait_finished([first], timeout=15)
    assert first.state == Job.State.SUCCEEDED, first.error
    assert second.prompt_id not in fake.rt.history.entries and first.prompt_id in fake.rt.history.entries
    assert not any(hit["effective"] for hit in fake.interrupts)


def test_a_cancel_arriving_while_the_prompt_is_submitted_stops_it_before_it_runs(engine, fakes, user):
    engine(COMFYROUTER_COMFY_TIMEOUT=10)
    fake = fakes()
    register(fake, "gpu")
    fake.configure(fault={"kind": "slow_start", "seconds": 4})  # holds the /ws upgrade: we cancel meanwhile
    job = services.job_create(prompt=txt2img(), owner=user)
    submitting = Job.objects.filter(id=job.id, state=Job.State.ASSIGNED).exclude(prompt_id="")
    wait_until(submitting.exists, timeout=4, what="the executor to start submitting")
    assert fake.prompts_received == 0

    services.job_cancel(job=job)

    [job] = wait_finished([job], timeout=10)
    assert job.state == Job.State.CANCELLED, job.error
    assert not job.outputs.exists() and job.prompt_id not in fake.rt.history.entries
    assert all(hit["prompt_id"] == job.prompt_id for hit in fake.interrupts)


def test_a_cancel_while_the_executor_is_dead_interrupts_the_prompt_on_the_node(engine, fakes, user):
    fake = fakes(step_time=0.1, previews=False)
    register(fake, "gpu")
    first = engine()
    job = wait_running(services.job_create(prompt=txt2img(steps=100), owner=user))
    first.kill()

    services.job_cancel(job=job)
    engine()
    [job] = sweep_until_finished([job], timeout=20)

    assert job.state == Job.State.CANCELLED
    assert {"prompt_id": job.prompt_id, "effective": True} in fake.interrupts
    assert Node.objects.get(name="gpu").running == 0
