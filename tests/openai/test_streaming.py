"""`stream: true`: the SDK iterates partial images (latent previews) and the completed image."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from PIL import Image

from generations.models import Job
from tests.generations.conftest import register, wait_finished, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def slow_node(fakes):
    """Eight sampler steps of 50 ms, each with a latent preview."""
    fake = fakes(steps_override=8, step_time=0.05)
    register(fake, "gpu")
    return fake


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_partial_images_then_the_completed_image(client, slow_node):
    stream = client.images.generate(prompt="a fox", size="128x96", stream=True, partial_images=2)

    events = list(stream)

    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    first, second, completed = events
    assert (first.partial_image_index, second.partial_image_index) == (0, 1)
    assert first.b64_json != second.b64_json  # previews of different steps
    assert decoded(first.b64_json).format == "PNG" and first.output_format == "png"
    assert decoded(completed.b64_json).size == (128, 96) and completed.size == "128x96"
    assert completed.usage.total_tokens == 0


def test_without_partial_images_only_the_completed_image_comes(client, slow_node):
    events = list(client.images.generate(prompt="x", size="64x64", stream=True, output_format="webp"))

    [completed] = events
    assert completed.type == "image_generation.completed" and decoded(completed.b64_json).format == "WEBP"


async def test_the_async_client_streams_too(async_client, slow_node):
    stream = await async_client.images.generate(prompt="x", size="64x64", stream=True, partial_images=1)

    types = [event.type async for event in stream]

    assert types == ["image_generation.partial_image", "image_generation.completed"]


def test_a_job_failing_mid_stream_raises_an_api_error_from_the_iterator(client, fakes):
    register(fakes(fault={"kind": "runtime_error", "node": "3", "exception_message": "boom"}), "gpu")
    stream = client.images.generate(prompt="x", size="64x64", stream=True, partial_images=1)

    with pytest.raises(openai.APIError) as caught:
        list(stream)

    assert "boom" in caught.value.message and caught.value.code == "job_failed"


def test_a_client_that_hangs_up_cancels_its_job(client, fakes):
    register(fakes(steps_override=400, step_time=0.05), "gpu")  # 20 s of sampling unless cancelled
    stream = client.images.generate(prompt="x", size="64x64", stream=True, partial_images=3)
    sampling = Job.objects.filter(state=Job.State.RUNNING, progress_value__gt=0)
    wait_until(sampling.exists, timeout=15, what="the job to sample")

    stream.close()

    [job] = wait_finished(Job.objects.all(), timeout=30)
    assert job.state == Job.State.CANCELLED and job.cancel_requested


def test_an_edit_of_n_2_streams_both_jobs(client, slow_node):
    image = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(image, format="PNG")

    stream = client.images.edit(image=("in.png", image.getvalue()), prompt="x", n=2, stream=True, partial_images=1)
    events = list(stream)

    partials = [event for event in events if event.type == "image_edit.partial_image"]
    assert [event.partial_image_index for event in partials] == [0, 1]
    assert [event.type for event in events].count("image_edit.completed") == 2
    assert Job.objects.filter(state=Job.State.SUCCEEDED).count() == 2
