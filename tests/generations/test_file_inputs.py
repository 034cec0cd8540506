"""File inputs given as base64 reach the node by content hash and feed LoadImage."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from generations.models import CachedFile
from tests.generations.conftest import register

pytestmark = pytest.mark.django_db(transaction=True)

RUN = "/api/endpoints/sd15-img2img/run"


def png(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def as_input(data: bytes, name: str = "photo.png") -> dict:
    return {"type": "file", "name": name, "content": base64.b64encode(data).decode()}


def test_a_base64_image_is_uploaded_by_hash_and_used_by_load_image(worker, fakes, builtin_endpoints, api_client):
    fake = fakes()
    register(fake, "gpu")
    data = png()

    body = {"inputs": {"prompt": "make it blue", "image": as_input(data)}, "wait": 30}
    response = api_client.post(RUN, body, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "succeeded", response.json()["error"]
    name = f"cr-{hashlib.sha256(data).hexdigest()}.png"
    assert [upload["name"] for upload in fake.uploads] == [name]
    loads = [n for n in fake.last_prompt_body["prompt"].values() if n["class_type"] == "LoadImage"]
    assert [n["inputs"]["image"] for n in loads] == [name]


def test_the_same_bytes_twice_are_stored_once(builtin_endpoints, api_client):
    data = png()
    for _ in range(2):
        assert (
            api_client.post(RUN, {"inputs": {"prompt": "x", "image": as_input(data)}}, format="json").status_code
            == 202
        )

    [entry] = CachedFile.objects.all()
    assert entry.hits == 1 and entry.size == len(data) and entry.content_type == "image/png"


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (base64.b64encode(b"just text, not pixels").decode(), "not an image"),
        ("%%%not base64%%%", "base64"),
    ],
)
def test_a_bad_file_is_a_400_naming_the_input(builtin_endpoints, api_client, content, rule):
    body = {"inputs": {"prompt": "x", "image": {"type": "file", "name": "a.png", "content": content}}}

    response = api_client.post(RUN, body, format="json")

    assert response.status_code == 400
    [problem] = response.json()["errors"]
    assert problem["field"] == "image" and rule in problem["rule"]
    assert CachedFile.objects.count() == 0


def test_an_oversized_base64_file_is_refused_before_decoding(builtin_endpoints, api_client, settings):
    settings.COMFYROUTER_MAX_DOWNLOAD_BYTES = 1024

    noise = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noise, format="PNG")

    response = api_client.post(
        RUN, {"inputs": {"prompt": "x", "image": as_input(noise.getvalue())}}, format="json"
    )

    assert response.status_code == 400
    assert "limit" in response.json()["errors"][0]["rule"]


def test_a_multipart_upload_is_a_file_input(worker, fakes, builtin_endpoints, api_client):
    fake = fakes()
    register(fake, "gpu")
    data = png(color=(10, 200, 10))
    upload = SimpleUploadedFile("leaf.png", data, content_type="image/png")

    form = {"inputs": json.dumps({"prompt": "autumn"}), "wait": "30", "image": upload}
    response = api_client.post(RUN, form, format="multipart")

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "succeeded"
    assert [u["name"] for u in fake.uploads] == [f"cr-{hashlib.sha256(data).hexdigest()}.png"]


def test_a_multipart_upload_that_is_not_an_image_is_a_400(builtin_endpoints, api_client):
    upload = SimpleUploadedFile("leaf.png", b"GIF89a but not really", content_type="image/png")

    response = api_client.post(RUN, {"inputs": '{"prompt": "x"}', "image": upload}, format="multipart")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "image"
