"""Nodes behind a token: the engine sends it on HTTP and on the WebSocket; a wrong one takes the node out."""

from __future__ import annotations

import httpx
import pytest

from generations import services
from generations.models import Job
from nodes.models import Node
from tests.generations.conftest import register, sweep_until_finished, wait_finished, wait_until
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_node_that_demands_a_token_gets_it_on_http_and_websocket(engine, fakes, user):
    engine()
    fake = fakes(require_token="s3cret")
    register(fake, "gpu", auth_token="s3cret")
    assert httpx.get(f"{fake.url}/queue").status_code == 401  # the fake really checks

    [job] = wait_finished([services.job_create(prompt=txt2img(), owner=user)])

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.outputs.count() == 1 and fake.prompts_received == 1
    assert {("GET", "/ws"), ("POST", "/prompt"), ("GET", "/view")} <= set(fake.request_log)


def test_a_node_refusing_our_token_is_taken_offline_and_the_job_fails_clearly(engine, fakes, user):
    engine(COMFYROUTER_MAX_ATTEMPTS=1)
    fake = fakes(require_token="s3cret")
    register(fake, "gpu", auth_token="wrong")

    [job] = wait_finished([services.job_create(prompt=txt2img(), owner=user)])

    assert job.state == Job.State.FAILED and fake.prompts_received == 0
    assert job.error.startswith("Node gpu was lost (") and "refused" in job.error and "token" in job.error
    node = Node.objects.get(name="gpu")
    assert node.status == Node.Status.OFFLINE and "refused" in node.last_error


def test_a_job_refused_by_one_node_runs_on_the_node_that_accepts_us(engine, fakes, user):
    engine(COMFYROUTER_MAX_ATTEMPTS=2)
    locked = fakes(require_token="s3cret")
    register(locked, "gpu-locked", auth_token="wrong")
    job = services.job_create(prompt=txt2img(), owner=user)
    refused = Job.objects.filter(id=job.id, state=Job.State.QUEUED, attempts=1)
    wait_until(refused.exists, timeout=10, what="the locked node to refuse the job")
    open_fake = fakes()
    register(open_fake, "gpu-open")

    [job] = sweep_until_finished([job])

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.attempts == 2 and open_fake.prompts_received == 1 and locked.prompts_received == 0
    assert "refused" in Node.objects.get(name="gpu-locked").last_error
