"""POST /v1/images/edits (multipart image and mask) and GET /v1/models through the SDK."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from PIL import Image

from generations.models import Job
from tests.openai.conftest import MAX_FILE
from workflows_app.models import Endpoint

pytestmark = pytest.mark.django_db(transaction=True)


def png(size: tuple[int, int], alpha: int = 255) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (200, 40, 40, alpha)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_edit_runs_img2img_on_the_uploaded_image(client, node):
    result = client.images.edit(
        image=("in.png", png((160, 96))), prompt="make it blue", response_format="b64_json"
    )

    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.size == (160, 96)  # img2img keeps the input's size
    job = Job.objects.get()
    assert job.endpoint.slug == "sd15-img2img" and job.input_files.count() == 1
    loaded = node.last_prompt_body["prompt"]["10"]["inputs"]["image"]
    assert loaded.startswith("cr-") and loaded in [upload["name"] for upload in node.uploads]


def test_an_edit_with_a_mask_inpaints(client, node):
    result = client.images.edit(
        image=("in.png", png((128, 128))), mask=("mask.png", png((128, 128), alpha=0)), prompt="a window", n=2
    )

    assert len(result.data) == 2 and all(item.url for item in result.data)
    jobs = Job.objects.all()
    assert {job.endpoint.slug for job in jobs} == {"sd15-inpaint"} and len(jobs) == 2  # no batch input: 2 jobs
    image, mask = (jobs[0].prompt[node_id]["inputs"]["image"] for node_id in ("10", "11"))
    assert image != mask and jobs[0].prompt["3"]["inputs"]["seed"] != jobs[1].prompt["3"]["inputs"]["seed"]


def test_inpainting_without_a_mask_uses_the_image_transparency(client, node):
    client.images.edit(model="sd15-inpaint", image=("in.png", png((64, 64), alpha=0)), prompt="x")

    prompt = Job.objects.get().prompt
    assert prompt["10"]["inputs"]["image"] == prompt["11"]["inputs"]["image"]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"image": ("in.png", b"not an image")}, "image"),
        ({"image": ("in.png", b"\x89PNG" + bytes(MAX_FILE))}, "image"),  # above the file limit
        ({"image": [("a.png", png((64, 64))), ("b.png", png((64, 64)))]}, "image"),
        ({"image": ("in.png", png((64, 64))), "mask": ("m.png", png((64, 64)))}, "mask"),  # img2img: no mask
        ({"image": ("in.png", png((64, 64))), "size": "512x512"}, "size"),
        ({"image": ("in.png", png((64, 64))), "model": "sd15-txt2img"}, "image"),
    ],
)
def test_bad_edits_are_bad_request_errors_naming_the_param(client, kwargs, param):
    kwargs.setdefault("model", "sd15-img2img")

    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(prompt="x", **kwargs)

    assert caught.value.param == param and Job.objects.count() == 0


async def test_an_edit_streams_image_edit_events(async_client, node):
    stream = await async_client.images.edit(image=("in.png", png((64, 64))), prompt="x", stream=True)

    assert [event.type async for event in stream] == ["image_edit.completed"]


def test_models_lists_the_enabled_image_endpoints(client):
    Endpoint.objects.filter(slug="sdxl-txt2img").update(enabled=False)

    models = client.models.list()

    ids = [model.id for model in models]
    assert ids == ["flux-txt2img", "sd15-img2img", "sd15-inpaint", "sd15-txt2img"]
    assert all(model.object == "model" and model.created > 0 and model.owned_by for model in models)
    assert client.models.retrieve("sd15-txt2img").id == "sd15-txt2img"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("sdxl-txt2img")
