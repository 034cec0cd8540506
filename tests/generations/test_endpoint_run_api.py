"""POST /api/endpoints/<slug>/run and the jobs API, against a real worker and a fake node."""

from __future__ import annotations

import pytest
from PIL import Image

from generations.models import Job
from tests.generations.conftest import register, wait_finished

pytestmark = pytest.mark.django_db(transaction=True)

RUN = "/api/endpoints/sd15-txt2img/run"


def test_run_with_wait_answers_200_with_the_outputs(worker, fakes, builtin_endpoints, api_client):
    fake = fakes()
    register(fake, "gpu")

    response = api_client.post(RUN, {"inputs": {"prompt": "a red fox", "width": 128}, "wait": 30}, format="json")

    assert response.status_code == 200, response.json()
    job = response.json()
    assert job["state"] == "succeeded" and job["endpoint"] == "sd15-txt2img"
    [output] = job["outputs"]
    assert (output["width"], output["height"]) == (128, 512)
    image = api_client.get(output["url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    sent = fake.last_prompt_body["prompt"]
    assert any(node["inputs"].get("text") == "a red fox" for node in sent.values())


def test_run_without_wait_answers_202_with_links(fakes, builtin_endpoints, api_client):
    response = api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json")

    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued"
    assert response["Location"] == body["links"]["self"]
    assert set(body["links"]) == {"self", "cancel", "page", "preview", "ws"}
    assert body["links"]["ws"].startswith("ws://")


def test_bad_inputs_are_all_listed_with_field_value_and_rule(builtin_endpoints, api_client):
    body = {"inputs": {"prompt": 5, "width": 0, "steps": "many", "nope": 1}}

    response = api_client.post(RUN, body, format="json")

    assert response.status_code == 400
    problems = {p["field"]: p for p in response.json()["errors"]}
    assert set(problems) == {"prompt", "width", "steps", "nope"}
    assert problems["width"]["value"] == 0 and "16" in problems["width"]["rule"]


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": []},
        {"wait": "soon"},
        {"wait": -1},
        {"priority": 99},
        {"webhook_url": "ftp://x/y"},
        {"input": {"prompt": "a typo runs no job with the defaults"}},
    ],
)
def test_a_malformed_envelope_is_a_400_naming_the_field(builtin_endpoints, api_client, body):
    response = api_client.post(RUN, body, format="json")

    assert response.status_code == 400
    assert set(response.json()) == set(body)


def test_a_json_body_sent_as_a_form_is_refused_with_the_header_it_needs(builtin_endpoints, api_client):
    body = '{"inputs": {"prompt": "a castle"}}'  # curl -d without -H 'Content-Type: application/json'

    response = api_client.generic("POST", RUN, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    [message] = response.json()[body]
    assert message.startswith("Unknown field: this body takes inputs, wait, webhook_url, priority.")
    assert message.endswith("A JSON body needs the header Content-Type: application/json.")
    assert not Job.objects.exists()  # before, a job ran with the default inputs


def test_unknown_and_disabled_endpoints_are_404(builtin_endpoints, api_client):
    from workflows_app.models import Endpoint

    Endpoint.objects.filter(slug="sdxl-txt2img").update(enabled=False)

    assert api_client.post("/api/endpoints/nope/run", {}, format="json").status_code == 404
    assert api_client.post("/api/endpoints/sdxl-txt2img/run", {}, format="json").status_code == 404


def test_the_same_idempotency_key_twice_makes_one_job(builtin_endpoints, api_client):
    first = api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.json()["id"] == second.json()["id"]
    assert Job.objects.count() == 1


def test_over_the_pending_limit_answers_429_with_retry_after(builtin_endpoints, api_client, settings):
    settings.COMFYROUTER_PENDING_LIMIT = 2
    for _ in range(2):
        assert api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json").status_code == 202

    response = api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json")

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "queue is full" in response.json()["detail"]


def test_a_missing_model_fails_the_job_at_once_naming_it(fakes, builtin_endpoints, api_client):
    register(fakes(), "gpu")

    response = api_client.post(
        RUN, {"inputs": {"prompt": "x", "checkpoint": "nowhere.safetensors"}}, format="json"
    )

    job = response.json()
    assert job["state"] == "failed"
    assert "checkpoints: nowhere.safetensors" in job["error"]


def test_users_see_only_their_jobs_and_filters_apply(builtin_endpoints, api_client, other_user):
    from tests.conftest import PASSWORD, basic_auth

    mine = api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json").json()
    api_client.credentials(HTTP_AUTHORIZATION=basic_auth(other_user.username, PASSWORD))

    assert api_client.get(f"/api/jobs/{mine['id']}").status_code == 404
    assert api_client.get("/api/jobs/").json()["results"] == []
    assert api_client.get(f"/api/jobs/{mine['id']}/outputs/0").status_code == 404


def test_job_list_filters_by_state_and_endpoint(builtin_endpoints, api_client):
    job = api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json").json()

    assert [j["id"] for j in api_client.get("/api/jobs/?state=queued").json()["results"]] == [job["id"]]
    assert api_client.get("/api/jobs/?state=failed").json()["results"] == []
    assert api_client.get("/api/jobs/?endpoint=flux-txt2img").json()["results"] == []
    assert api_client.get("/api/jobs/?state=bogus").status_code == 400


def test_cancel_of_a_queued_job_is_immediate(builtin_endpoints, api_client):
    job = api_client.post(RUN, {"inputs": {"prompt": "x"}}, format="json").json()

    response = api_client.post(f"/api/jobs/{job['id']}/cancel")

    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert api_client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409


def test_the_preview_is_404_until_one_exists_and_needs_no_auth(
    worker, fakes, builtin_endpoints, api_client, anon_client
):
    register(fakes(step_time=0.05), "gpu")
    job = api_client.post(RUN, {"inputs": {"prompt": "x", "steps": 4}}, format="json").json()
    assert anon_client.get(f"/preview/{job['id']}").status_code == 404

    wait_finished([Job.objects.get(id=job["id"])])

    response = anon_client.get(f"/preview/{job['id']}")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert Image.open(__import__("io").BytesIO(response.content)).size == (512, 512)
