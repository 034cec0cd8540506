"""Image URLs are downloaded once (however many jobs ask at once), cached, and reach the node by hash."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time

import pytest
from django.db import connection
from PIL import Image
from rest_framework.test import APIClient

from generations import cache
from generations.models import CachedFile, Job
from tests.files.conftest import png
from tests.generations.conftest import register, wait_finished

pytestmark = pytest.mark.django_db(transaction=True)

RUN = "/api/endpoints/sd15-img2img/run"


def run(client, image, **inputs):
    return client.post(RUN, {"inputs": {"prompt": "make it blue", "image": image, **inputs}}, format="json")


def noise_png(side: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_url_input_runs_end_to_end(worker, fakes, builtin_endpoints, api_client, image_server, allow_local):
    fake = fakes()
    register(fake, "gpu")
    data = png()
    url = image_server.serve("/photos/cat.png", data, Content_Type="application/octet-stream")

    response = api_client.post(RUN, {"inputs": {"prompt": "x", "image": url}, "wait": 30}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "succeeded", response.json()["error"]
    name = f"cr-{hashlib.sha256(data).hexdigest()}.png"
    assert [upload["name"] for upload in fake.uploads] == [name]
    loads = [n for n in fake.last_prompt_body["prompt"].values() if n["class_type"] == "LoadImage"]
    assert [n["inputs"]["image"] for n in loads] == [name]
    [entry] = CachedFile.objects.all()
    assert entry.source_url == url and entry.original_name == "cat.png" and entry.content_type == "image/png"


def test_a_second_job_with_the_same_url_downloads_nothing(
    builtin_endpoints, api_client, image_server, allow_local
):
    url = image_server.serve("/a.png", png())

    assert run(api_client, url).status_code == 202
    assert run(api_client, url).status_code == 202

    assert image_server.hits["/a.png"] == 1
    [entry] = CachedFile.objects.all()
    assert entry.hits == 1
    assert {file.id for job in Job.objects.all() for file in job.input_files.all()} == {entry.id}


def test_another_url_with_the_same_bytes_is_stored_once_and_remembered(
    builtin_endpoints, api_client, image_server, allow_local
):
    data = png()
    first, second = image_server.serve("/1.png", data), image_server.serve("/2.png", data)

    for url in (first, second, second):
        assert run(api_client, url).status_code == 202

    assert CachedFile.objects.count() == 1
    assert (image_server.hits["/1.png"], image_server.hits["/2.png"]) == (1, 1)


def post_concurrently(user, url: str, count: int) -> list[int]:
    """Status codes of `count` runs posted at once from their own threads (and DB connections)."""
    statuses: list[int] = []

    def post() -> None:
        client = APIClient()
        client.force_authenticate(user)
        try:
            statuses.append(run(client, url).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_twenty_concurrent_jobs_on_one_url_cause_one_download(builtin_endpoints, user, image_server, allow_local):
    url = image_server.serve("/busy.png", png())
    image_server.delay["/busy.png"] = 0.5  # every request arrives while the first download runs

    assert post_concurrently(user, url, 20) == [202] * 20

    assert image_server.hits["/busy.png"] == 1
    [entry] = CachedFile.objects.all()
    assert entry.hits == 19 and Job.objects.filter(input_files=entry).count() == 20


def test_requests_waiting_on_a_failing_url_share_its_failure(
    builtin_endpoints, user, image_server, allow_local, settings
):
    settings.COMFYROUTER_DOWNLOAD_TIMEOUT = 0.5
    url = image_server.serve("/stuck.png", png())
    image_server.delay["/stuck.png"] = 3
    started = time.monotonic()

    assert post_concurrently(user, url, 5) == [400] * 5

    assert image_server.hits["/stuck.png"] == 1 and time.monotonic() - started < 2.5


def test_a_node_that_holds_a_file_is_not_sent_it_again(
    worker, fakes, builtin_endpoints, api_client, image_server, allow_local
):
    fake = fakes()
    node = register(fake, "gpu")
    url = image_server.serve("/again.png", png())

    first = run(api_client, url).json()["id"]
    wait_finished(Job.objects.filter(id=first))
    second = run(api_client, url).json()["id"]
    # Memory lost (node restarted, Redis flushed): the node is asked what it holds, not sent it blindly.
    wait_finished(Job.objects.filter(id=second))
    cache.node_files_forget(node)
    third = run(api_client, url).json()["id"]

    jobs = wait_finished(Job.objects.filter(id__in=[first, second, third]))
    assert [job.state for job in jobs] == ["succeeded"] * 3, [job.error for job in jobs]
    assert len(fake.uploads) == 1
    assert cache.node_files(node) == {fake.uploads[0]["name"]}


@pytest.mark.parametrize(
    ("route", "body", "headers", "rule"),
    [
        ("/text.png", b"just text, not pixels", {"Content_Type": "image/png"}, "not an image"),
        ("/big.png", None, {}, "limit"),
        ("/big-unannounced.png", None, {"Content_Length": ""}, "limit"),
        ("/missing.png", b"", {"status": 404}, "HTTP 404"),
    ],
)
def test_a_bad_download_is_a_400_naming_the_input(
    builtin_endpoints, api_client, image_server, allow_local, settings, route, body, headers, rule
):
    settings.COMFYROUTER_MAX_DOWNLOAD_BYTES = 2048
    url = image_server.serve(route, noise_png() if body is None else body, **headers)

    response = run(api_client, url)

    assert response.status_code == 400, response.content
    [problem] = response.json()["errors"]
    assert problem["field"] == "image" and rule in problem["rule"], problem
    assert CachedFile.objects.count() == 0 and Job.objects.count() == 0


def test_a_slow_server_is_a_400_not_a_hang(builtin_endpoints, api_client, image_server, allow_local, settings):
    settings.COMFYROUTER_DOWNLOAD_TIMEOUT = 0.5
    url = image_server.serve("/slow.png", png())
    image_server.delay["/slow.png"] = 3

    response = run(api_client, url)

    assert response.status_code == 400
    assert "did not answer in 0.5 s" in response.json()["errors"][0]["rule"]


def test_invalid_base64_is_a_400(builtin_endpoints, api_client):
    response = run(api_client, {"type": "file", "name": "a.png", "content": "%%%not base64%%%"})

    assert response.status_code == 400
    assert "base64" in response.json()["errors"][0]["rule"]


def test_a_model_url_is_refused_without_a_models_dir(builtin_endpoints, api_client, image_server, allow_local):
    url = image_server.serve("/models/v1.safetensors", b"weights")

    response = run(api_client, {"type": "file", "name": "a.png", "content": "iVBORw0KGgo="}, checkpoint=url)

    assert response.status_code == 400
    problems = {problem["field"]: problem["rule"] for problem in response.json()["errors"]}
    assert "COMFYROUTER_MODELS_DIR" in problems["checkpoint"]
    assert image_server.hits["/models/v1.safetensors"] == 0


def test_a_model_url_is_placed_in_the_models_dir_and_named_in_the_prompt(
    builtin_endpoints, api_client, image_server, allow_local, settings, tmp_path, fakes
):
    settings.COMFYROUTER_MODELS_DIR = str(tmp_path)
    node = register(fakes(), "gpu")
    disposition = 'attachment; filename="../My Model.safetensors"'
    url = image_server.serve("/dl", b"weights", Content_Disposition=disposition)
    image = image_server.serve("/in.png", png())

    responses = [run(api_client, image, checkpoint=url) for _ in range(2)]

    assert [response.status_code for response in responses] == [202, 202]
    [placed] = (tmp_path / "checkpoints").iterdir()
    assert placed.name.startswith("cr-") and placed.name.endswith("-My_Model.safetensors")
    assert placed.read_bytes() == b"weights" and image_server.hits["/dl"] == 1
    loaders = [n for n in Job.objects.first().prompt.values() if n["class_type"] == "CheckpointLoaderSimple"]
    assert [n["inputs"]["ckpt_name"] for n in loaders] == [placed.name]
    # The shared directory gives every node the file: the scheduler must not call the job unrunnable.
    # (each request claims a free slot of the node's two itself)
    assert list(Job.objects.values_list("state", flat=True)) == ["assigned", "assigned"]
    node.refresh_from_db()
    assert placed.name in node.health["models"]["checkpoints"]
