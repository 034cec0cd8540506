"""POST /api/endpoints/<slug> with a ComfyUI-Fast-API body, answered as Fast-API does, against a real worker."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from generations.endpoint_views import fastapi_inputs
from tests.generations.conftest import register
from tests.workflows_app.test_importer import fixture

pytestmark = pytest.mark.django_db(transaction=True)


def published(client, slug: str, graph: str, **fields) -> None:
    imported = client.post("/api/workflows/", {"name": slug, "graph": fixture(graph)}, format="json")
    assert imported.status_code == 201, imported.json()
    response = client.post("/api/endpoints/", {"slug": slug, "workflow": slug, **fields}, format="json")
    assert response.status_code == 201, response.json()


def png(width: int = 8, height: int = 8) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_fastapi_body_gets_the_named_images_in_base64(worker, fakes, operator_client, api_client):
    fake = fakes()
    register(fake, "gpu")
    published(operator_client, "sd", "sd15_txt2img.api", output_mode="base64", max_wait=30)

    body = {"sampler": {"seed": 1234, "steps": 3}, "prompt": {"text": "a lighthouse"}, "size": {"width": 64}}
    response = api_client.post("/api/endpoints/sd", body, format="json")

    assert response.status_code == 200, response.json()
    [image] = response.json()["my awesome image"]
    assert set(response.json()) == {"my awesome image"}
    assert Image.open(io.BytesIO(base64.b64decode(image))).size == (64, 512)
    sent = fake.last_prompt_body["prompt"]
    assert sent["3"]["inputs"]["seed"] == 1234 and sent["3"]["inputs"]["steps"] == 3
    assert sent["6"]["inputs"]["text"] == "a lighthouse"
    job = api_client.get(response["Location"]).json()  # the job behind the answer
    assert job["state"] == "succeeded" and job["endpoint"] == "sd" and len(job["outputs"]) == 1


def test_url_mode_answers_signed_links(worker, fakes, operator_client, api_client, anon_client):
    register(fakes(), "gpu")
    published(operator_client, "sd", "sd15_txt2img.api", output_mode="url", max_wait=30)

    response = api_client.post("/api/endpoints/sd", {"prompt": "a boat"}, format="json")

    assert response.status_code == 200, response.json()
    [link] = response.json()["my awesome image"]
    assert "/files/" in link
    assert anon_client.get(link).status_code == 200  # signed: no credentials needed


def test_a_fastapi_file_by_content_runs_img2img(worker, fakes, operator_client, api_client):
    fake = fakes()
    register(fake, "gpu")
    published(operator_client, "i2i", "sd15_img2img.api", output_mode="base64", max_wait=30)

    body = {"input": {"image": {"type": "file", "content": png(), "name": "cat.png"}}, "sampler": {"steps": 2}}
    response = api_client.post("/api/endpoints/i2i", body, format="json")

    assert response.status_code == 200, response.json()
    assert len(response.json()["result"]) == 1
    assert fake.last_prompt_body["prompt"]["10"]["inputs"]["image"].startswith("cr-")


def test_a_fastapi_url_file_becomes_a_url_input():
    body = {"load": {"image": {"type": "file", "url": "https://example.com/a.png", "name": "a.png"}}, "n": 1}

    assert fastapi_inputs(body) == {"load": {"image": "https://example.com/a.png"}, "n": 1}
    assert fastapi_inputs({"x": {"type": "file", "content": "QQ==", "name": "a"}})["x"]["content"] == "QQ=="


def test_bad_values_are_a_400_naming_field_value_and_rule(operator_client, api_client):
    published(operator_client, "sd", "sd15_txt2img.api")

    body = {"sampler": {"steps": 0, "cfg": "high"}, "x": 1}
    response = api_client.post("/api/endpoints/sd", body, format="json")

    assert response.status_code == 400 and response.json()["code"] == "invalid_inputs"
    assert response.json()["errors"] == [
        {"field": "sampler.steps", "value": 0, "rule": "must be ≥ 1"},
        {"field": "sampler.cfg", "value": "high", "rule": "must be a number"},
        {"field": "x", "value": 1, "rule": "is not an input of this endpoint"},
    ]
    assert api_client.post("/api/endpoints/sd", [1, 2], format="json").status_code == 400


def test_a_job_that_outlives_max_wait_answers_202_with_the_job(fakes, operator_client, api_client):
    published(operator_client, "sd", "sd15_txt2img.api", max_wait=1)  # no worker: the job stays queued

    response = api_client.post("/api/endpoints/sd", {}, format="json")

    assert response.status_code == 202 and response.json()["state"] == "queued"
    assert response["Location"] == response.json()["links"]["self"]


def test_unknown_and_disabled_endpoints_are_404(operator_client, api_client, anon_client):
    published(operator_client, "sd", "sd15_txt2img.api")
    operator_client.patch("/api/endpoints/sd", {"enabled": False}, format="json")

    assert api_client.post("/api/endpoints/nope", {}, format="json").status_code == 404
    assert api_client.post("/api/endpoints/sd", {}, format="json").status_code == 404
    assert anon_client.post("/api/endpoints/sd", {}, format="json").status_code == 401


def test_the_fastapi_readme_example_works_unchanged(worker, fakes, operator_client, api_client):
    fake = fakes()
    register(fake, "gpu")
    graph = fixture("sd15_txt2img.api")
    graph["3"]["_meta"]["title"] = "KSampler [my sampler]"
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]},
                  "_meta": {"title": "Preview Image [my awesome image]"}}  # fmt: skip
    operator_client.post("/api/workflows/", {"name": "readme", "graph": graph}, format="json")
    operator_client.post("/api/endpoints/", {"slug": "readme", "workflow": "readme", "output_mode": "base64"},
                         format="json")  # fmt: skip

    response = api_client.post("/api/endpoints/readme", {"my sampler": {"seed": 1234}}, format="json")

    assert response.status_code == 200, response.json()
    assert list(response.json()) == ["my awesome image"] and len(response.json()["my awesome image"]) == 1
    assert fake.last_prompt_body["prompt"]["3"]["inputs"]["seed"] == 1234


def test_a_failed_job_is_a_502_with_comfyuis_error(worker, fakes, operator_client, api_client):
    register(fakes(fault={"kind": "runtime_error", "node": "3", "exception_message": "CUDA out of memory"}), "gpu")
    published(operator_client, "sd", "sd15_txt2img.api", max_wait=30)

    response = api_client.post("/api/endpoints/sd", {"prompt": "x"}, format="json")

    assert response.status_code == 502 and response.json()["code"] == "job_failed"
    assert "CUDA out of memory" in response.json()["detail"] and response.json()["job"]["state"] == "failed"
