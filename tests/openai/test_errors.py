"""Every /v1 error in OpenAI's shape, raised by the SDK as the matching exception with `param` set."""

from __future__ import annotations

import httpx
import openai
import pytest
from django.contrib.auth.hashers import make_password
from django.db import OperationalError

from generations.models import Job
from generations.openai import errors as openai_errors
from tests.conftest import PASSWORD
from tests.generations.conftest import register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "size": "large"}, "size"),
        ({"prompt": "x", "size": "100x96"}, "size"),  # not a multiple of 8
        ({"prompt": "x", "size": "8x8"}, "size"),  # below the latent's minimum of 16
        ({"prompt": "x", "size": "16392x512"}, "size"),  # above its maximum of 16384
        ({"prompt": "x", "quality": "ultra"}, "quality"),
        ({"prompt": "x", "response_format": "url", "output_format": "jpeg"}, "output_format"),
        ({"prompt": "x", "partial_images": 2}, "partial_images"),
        ({"prompt": "x", "extra_body": {"seed": "soon"}}, "seed"),
        ({"prompt": "x", "extra_body": {"steps": 0}}, "steps"),
        ({"prompt": "x", "extra_body": {"colour": "red"}}, "colour"),
        ({"prompt": "x", "model": "sd15-img2img"}, "model"),  # an edit model needs an image
    ],
)
def test_bad_parameters_are_bad_request_errors_naming_the_param(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**kwargs)

    error = caught.value
    assert (error.status_code, error.param, error.type) == (400, param, "invalid_request_error")
    assert error.body["message"] and Job.objects.count() == 0


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(model="sd99-turbo", prompt="x")

    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    assert "sd99-turbo" in caught.value.message


def test_a_bad_key_is_an_authentication_error(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()

    assert caught.value.code == "invalid_api_key"
    assert caught.value.response.headers["www-authenticate"].startswith("Bearer")


def test_basic_auth_works_too(server, user):
    # The server has no MD5 hasher, the tests' fast one: hash this password the production way.
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save()

    response = httpx.get(f"{server}/v1/models", auth=(user.username, PASSWORD))

    assert response.status_code == 200 and response.json()["object"] == "list"


def test_a_full_queue_is_a_rate_limit_error_with_retry_after(client):
    Job.objects.bulk_create([Job(prompt={}) for _ in range(100)])  # no node: they stay queued

    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="x")

    assert caught.value.code == "queue_full"
    assert int(caught.value.response.headers["retry-after"]) > 0


def test_no_node_with_the_models_is_a_503_saying_what_is_missing(client, fakes):
    register(fakes(), "gpu", health={"models": {"checkpoints": ["other.safetensors"]}})

    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(prompt="x")

    assert caught.value.status_code == 503 and caught.value.code == "no_node_available"
    assert "v1-5-pruned-emaonly.safetensors" in caught.value.message


def test_a_job_failing_on_comfyui_is_a_500_the_sdk_does_not_retry(client, fakes):
    fake = fakes(fault={"kind": "runtime_error", "node": "3", "exception_message": "CUDA out of memory"})
    register(fake, "gpu")

    with pytest.raises(openai.InternalServerError) as caught:
        client.with_options(max_retries=2).images.generate(prompt="x")

    assert caught.value.status_code == 500 and caught.value.code == "job_failed"
    assert "CUDA out of memory" in caught.value.message
    assert Job.objects.count() == 1  # x-should-retry: false kept the SDK from running it again


def test_a_job_past_the_endpoint_max_wait_is_a_503_and_is_cancelled(client, fakes):
    from workflows_app.models import Endpoint

    register(fakes(steps_override=200, step_time=0.05), "gpu")
    Endpoint.objects.filter(slug="sd15-txt2img").update(max_wait=1)

    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(prompt="x", size="64x64")

    assert caught.value.status_code == 503 and caught.value.code == "timeout"
    job = Job.objects.get()
    assert job.state == Job.State.CANCELLED or job.cancel_requested


def test_a_busy_database_is_a_503_with_retry_after_in_openai_shape(settings):
    response = openai_errors.exception_handler(OperationalError("database is locked: ..."), {})

    assert response is not None and response.status_code == 503
    assert response.data["error"]["code"] == "database_unavailable"
    assert response["Retry-After"] == str(settings.COMFYROUTER_RETRY_AFTER)
