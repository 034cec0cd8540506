"""A worker SIGKILLed mid-job: the sweep hands the job to a new worker, which re-attaches instead of re-posting."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from generations import services
from generations.models import Job
from nodes.models import Node
from tests.generations.conftest import register, sweep_until_finished, wait_running
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_whose_worker_is_killed_finishes_exactly_once(engine, fakes, user):
    fake = fakes(step_time=0.05, previews=False)
    register(fake, "gpu")
    first = engine()
    job = wait_running(services.job_create(prompt=txt2img(steps=40), owner=user))

    first.kill()
    engine()
    [job] = sweep_until_finished([job], timeout=30)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert fake.prompts_received == 1 and job.attempts == 1
    assert job.outputs.count() == 1 and job.progress_value == job.progress_max
    assert Node.objects.get(name="gpu").running == 0


def test_a_job_killed_while_still_running_on_the_node_is_followed_to_its_end(engine, fakes, user):
    fake = fakes(step_time=0.1, previews=False)
    register(fake, "gpu")
    first = engine()
    job = wait_running(services.job_create(prompt=txt2img(steps=60), owner=user))

    first.kill()
    engine()
    [job] = sweep_until_finished([job], timeout=30)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert fake.prompts_received == 1 and job.outputs.count() == 1
    assert fake.requests_per_path.get("/queue", 0) >= 1  # the new worker located the prompt first


def test_a_prompt_id_stored_but_never_posted_is_posted_once_under_that_id(worker_env, engine, fakes, user):
    fake = fakes()
    node = register(fake, "gpu", running=1)
    job = services.job_create(prompt=txt2img(), owner=user)
    prompt_id = str(uuid.uuid4())
    # What a worker killed between its lease (which stores the ids) and POST /prompt leaves behind.
    long_ago = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(id=job.id).update(
        state=Job.State.ASSIGNED, node=node, assigned_at=long_ago, heartbeat_at=long_ago, worker="dead:1:x",
        prompt_id=prompt_id, client_id=uuid.uuid4().hex, attempts=1,
    )  # fmt: skip
    engine()

    [job] = sweep_until_finished([job], timeout=20)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert fake.prompts_received == 1 and fake.received_prompts[0]["prompt_id"] == prompt_id
    assert job.prompt_id == prompt_id and job.outputs.count() == 1


def test_an_executor_whose_lease_was_taken_leaves_the_job_alone(engine, fakes, user):
    fake = fakes(step_time=0.05, previews=False)
    register(fake, "gpu")
    engine()
    job = wait_running(services.job_create(prompt=txt2img(steps=40), owner=user))

    # What the reaper and a new executor do when this executor's heartbeat looked dead.
    Job.objects.filter(id=job.id).update(worker="another:1:x", heartbeat_at=timezone.now())
    [job] = sweep_until_finished([job], timeout=20)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert not job.cancel_requested and fake.prompts_received == 1 and job.outputs.count() == 1
