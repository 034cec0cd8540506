"""Output files go from a node's /view to storage as they arrive, bounded by COMFYROUTER_MAX_OUTPUT_BYTES."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from generations.models import Job
from generations.outputs import SPOOL_BYTES, fetch_outputs
from nodes.comfy import ComfyClient, ComfyFileTooLarge, OutputFile
from tests.fake_comfyui import FakeComfyUI

pytestmark = pytest.mark.django_db


@pytest.fixture
def node():
    with FakeComfyUI(port=0) as fake, ComfyClient(fake.url, timeout=5.0) as client:
        yield client


def on_node(client: ComfyClient, data: bytes, name: str) -> OutputFile:
    """A file on the node, as an `executed` event would list it (uploaded inputs are served by /view too)."""
    uploaded = client.upload_image(data, filename=name)
    return OutputFile(node_id="9", filename=uploaded.name, subfolder="", type="input")


def png(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_outputs_small_and_past_the_memory_spool_are_stored_with_their_facts(node):
    job = Job.objects.create(prompt={})
    image, video = png(), os.urandom(SPOOL_BYTES + 1000)
    files = [on_node(node, image, "a.png"), on_node(node, video, "b.mp4")]

    first, second = fetch_outputs(job=job, client=node, files=files, titles={"9": "Save"})

    assert (first.size, first.width, first.height, first.node_title) == (len(image), 64, 48, "Save")
    assert (second.size, second.width, second.content_type) == (len(video), None, "video/mp4")
    for record, data in ((first, image), (second, video)):
        assert record.sha256 == hashlib.sha256(data).hexdigest()
        with default_storage.open(record.file.name) as stored:
            assert stored.read() == data


def test_an_output_past_the_limit_fails_the_fetch_and_leaves_no_file(node, settings):
    settings.COMFYROUTER_MAX_OUTPUT_BYTES = 10_000
    job = Job.objects.create(prompt={})
    files = [on_node(node, png(), "kept.png"), on_node(node, os.urandom(10_001), "big.bin")]

    with pytest.raises(ComfyFileTooLarge, match="more than 10000 bytes of big.bin"):
        fetch_outputs(job=job, client=node, files=files, titles={})

    # Stored first, deleted when the next one failed.
    assert not [path for path in Path(settings.MEDIA_ROOT).rglob("*kept.png") if str(job.id) in str(path)]
