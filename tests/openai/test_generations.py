"""POST /v1/images/generations through the official openai SDK, sync and async, against Daphne."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from generations.models import Job
from workflows_app.builtin import sd15_txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def image_of(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_b64_json_answers_a_png_of_the_asked_size(client, node):
    result = client.images.generate(
        model="sd15-txt2img", prompt="a red fox", size="256x384", response_format="b64_json"
    )

    [item] = result.data
    image = image_of(item.b64_json)
    assert (image.format, image.size) == ("PNG", (256, 384))
    assert result.created > 0 and result.size == "256x384"
    sent = node.last_prompt_body["prompt"]
    assert sent["6"]["inputs"]["text"] == "a red fox"
    assert Job.objects.get().source == Job.Source.OPENAI


def test_size_auto_keeps_the_endpoint_default(client, node):
    result = client.images.generate(prompt="x", size="auto", response_format="b64_json")

    assert image_of(result.data[0].b64_json).size == (512, 512)


def test_url_downloads_the_png_without_credentials(client, node):
    result = client.images.generate(prompt="a lighthouse", size="320x192", response_format="url")

    response = httpx.get(result.data[0].url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (320, 192)
    assert Job.objects.get().endpoint.slug == "sd15-txt2img"  # the default model


@pytest.mark.parametrize(("model", "answer"), [("dall-e-3", "url"), ("gpt-image-1", "b64_json")])
def test_openai_model_names_run_on_the_default_endpoint(client, node, model, answer):
    result = client.images.generate(model=model, prompt="x", size="64x64")

    assert Job.objects.get().endpoint.slug == "sd15-txt2img"
    assert getattr(result.data[0], answer)  # each answers as OpenAI's model does by default


def test_n_2_is_one_batch_of_two_images(client, node):
    result = client.images.generate(prompt="two cats", n=2, size="128x128", response_format="b64_json")

    assert len(result.data) == 2
    assert all(image_of(item.b64_json).size == (128, 128) for item in result.data)
    assert Job.objects.count() == 1 and node.last_prompt_body["prompt"]["5"]["inputs"]["batch_size"] == 2


@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
def test_output_format_converts_the_image(client, node, output_format):
    result = client.images.generate(
        prompt="x", size="128x128", response_format="b64_json", output_format=output_format
    )

    assert image_of(result.data[0].b64_json).format == {"jpeg": "JPEG", "webp": "WEBP"}[output_format]
    assert result.output_format == output_format


def test_quality_and_extensions_reach_the_workflow(client, node):
    client.images.generate(
        prompt="x", size="128x128", quality="low", extra_body={"negative_prompt": "fog", "seed": 42}
    )
    low = node.last_prompt_body["prompt"]["3"]["inputs"]
    client.images.generate(prompt="x", size="128x128", quality="hd", extra_body={"steps": 7})
    explicit = node.last_prompt_body["prompt"]["3"]["inputs"]

    assert (low["steps"], low["seed"]) == (10, 42)  # low: half the endpoint's 20 steps
    assert explicit["steps"] == 7  # an explicit steps wins over the quality preset
    assert Job.objects.order_by("created_at").first().prompt["7"]["inputs"]["text"] == "fog"


def test_flux_takes_size_and_prompt_from_its_annotations(client, fakes):
    from tests.generations.conftest import register

    fake = fakes(steps_override=2)
    register(fake, "flux", health={"models": {}})
    result = client.images.generate(
        model="flux-txt2img", prompt="a comet", size="512x256", response_format="b64_json"
    )

    assert image_of(result.data[0].b64_json).size == (512, 256)


async def test_the_async_client_gets_the_same_answer(async_client, node):
    result = await async_client.images.generate(prompt="a boat", size="192x128", response_format="b64_json")

    assert image_of(result.data[0].b64_json).size == (192, 128)


def test_an_unannotated_workflow_is_driven_by_node_types(client, node):
    from tests.openai.test_mapping import untitled
    from workflows_app.services import endpoint_publish, workflow_import

    version = workflow_import(name="plain", graph=untitled(sd15_txt2img.GRAPH))
    endpoint_publish(slug="plain", workflow=version.workflow)

    result = client.images.generate(
        model="plain", prompt="a kite", n=2, size="96x64", response_format="b64_json", extra_body={"seed": 5}
    )

    assert [image_of(item.b64_json).size for item in result.data] == [(96, 64), (96, 64)]
    sent = node.last_prompt_body["prompt"]
    assert (sent["6"]["inputs"]["text"], sent["3"]["inputs"]["seed"], sent["5"]["inputs"]["batch_size"]) == (
        "a kite",
        5,
        2,
    )
