"""POST/GET/PATCH/DELETE /api/endpoints/: publish a workflow's latest version, republish, list with schemas."""

from __future__ import annotations

import pytest

from tests.generations.conftest import register
from tests.workflows_app.test_importer import fixture
from workflows_app.models import Endpoint

pytestmark = pytest.mark.django_db

URL = "/api/endpoints/"


def imported(client, name: str, graph: str) -> dict:
    response = client.post("/api/workflows/", {"name": name, "graph": fixture(graph)}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def publish(client, **body):
    return client.post(URL, body, format="json")


def test_publishing_makes_an_endpoint_on_the_latest_version(operator_client, api_client):
    version = imported(operator_client, "castle", "sd15_features.ui")

    response = publish(operator_client, slug="castle", workflow="castle", title="Castles", output_mode="base64",
                       max_wait=60, defaults={"sampler.steps": 12})  # fmt: skip

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["slug"], body["title"], body["version"], body["workflow"]) == ("castle", "Castles", 1, "castle")
    assert body["outputs"] == ["images"] and body["defaults"] == {"sampler.steps": 12}
    assert body["links"]["run"].endswith("/api/endpoints/castle/run")
    schema = body["input_schema"]
    assert set(schema["properties"]) == {"prompt", "sampler"}
    steps = schema["properties"]["sampler"]["properties"]["steps"]
    assert (steps["type"], steps["minimum"], steps["maximum"]) == ("integer", 1, 10000)
    assert Endpoint.objects.get(slug="castle").version_id == version["id"]

    listed = api_client.get(URL).json()
    assert "castle" in [item["slug"] for item in listed] and "sd15-txt2img" in [item["slug"] for item in listed]
    assert api_client.get(f"{URL}castle").json()["input_schema"] == schema


def test_the_workflow_may_be_named_by_id(operator_client):
    version = imported(operator_client, "sd", "sd15_txt2img.api")
    workflow_id = operator_client.get("/api/workflows/").json()
    workflow_id = next(item["id"] for item in workflow_id if item["name"] == "sd")

    response = publish(operator_client, slug="sd", workflow=str(workflow_id))

    assert response.status_code == 201 and response.json()["version"] == version["number"]


def test_an_endpoint_stays_on_its_version_until_republished(operator_client):
    imported(operator_client, "sd", "sd15_txt2img.api")
    publish(operator_client, slug="sd", workflow="sd")
    edited = fixture("sd15_txt2img.api")
    edited["7"]["_meta"]["title"] = "Negative [negative]"
    operator_client.post("/api/workflows/", {"name": "sd", "graph": edited}, format="json")

    before = operator_client.get(f"{URL}sd").json()
    assert before["version"] == 1 and "negative" not in before["input_schema"]["properties"]

    again = publish(operator_client, slug="sd", workflow="sd")

    assert again.status_code == 200
    assert again.json()["version"] == 2 and "negative" in again.json()["input_schema"]["properties"]
    assert Endpoint.objects.filter(slug="sd").count() == 1


def test_bad_defaults_and_unknown_workflows_are_refused(operator_client):
    imported(operator_client, "sd", "sd15_txt2img.api")

    bad = publish(operator_client, slug="sd", workflow="sd", defaults={"sampler.steps": 0, "nope": 1, "prompt": 3})
    unknown = publish(operator_client, slug="sd", workflow="missing")
    bad_slug = publish(operator_client, slug="not a slug", workflow="sd", output_mode="carrier-pigeon")

    assert bad.status_code == 400 and bad.json()["code"] == "invalid_endpoint"
    assert bad.json()["errors"] == [
        "defaults.nope: is not an input of this endpoint",
        "defaults.sampler.steps: 0 must be ≥ 1",
        "defaults.prompt: 3 must be a string",
    ]
    assert unknown.status_code == 400 and "missing" in unknown.json()["workflow"][0]
    assert bad_slug.status_code == 400 and set(bad_slug.json()) == {"slug", "output_mode"}
    assert not Endpoint.objects.filter(slug="sd").exists()


def test_staff_change_and_remove_endpoints(operator_client, api_client):
    imported(operator_client, "sd", "sd15_txt2img.api")
    publish(operator_client, slug="sd", workflow="sd")

    assert api_client.patch(f"{URL}sd", {"title": "x"}, format="json").status_code == 403
    assert publish(api_client, slug="sd2", workflow="sd").status_code == 403
    changed = operator_client.patch(f"{URL}sd", {"title": "SD", "enabled": False, "max_wait": 10}, format="json")
    assert changed.status_code == 200 and (changed.json()["title"], changed.json()["max_wait"]) == ("SD", 10)
    assert api_client.get(f"{URL}sd").status_code == 404  # disabled: hidden from users
    assert "sd" not in [item["slug"] for item in api_client.get(URL).json()]
    bad = operator_client.patch(f"{URL}sd", {"defaults": {"size.width": 3}}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"] == ["defaults.size.width: 3 must be ≥ 16"]
    misspelt = operator_client.patch(f"{URL}sd", {"max_wiat": 99}, format="json")
    assert misspelt.status_code == 400 and list(misspelt.json()) == ["max_wiat"]
    assert operator_client.get(f"{URL}sd").json()["max_wait"] == 10

    assert api_client.delete(f"{URL}sd").status_code == 403
    assert operator_client.delete(f"{URL}sd").status_code == 204
    assert operator_client.get(f"{URL}sd").status_code == 404


def test_the_run_route_still_wins_over_the_detail_route(builtin_endpoints, api_client):
    response = api_client.post(f"{URL}sd15-txt2img/run", {"inputs": {"steps": 0}}, format="json")

    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "steps"


@pytest.mark.django_db(transaction=True)
def test_a_ui_workflow_round_trips_through_the_fleet(worker, fakes, operator_client, api_client):
    fake = fakes()
    register(fake, "gpu")
    imported(operator_client, "castle", "sd15_features.ui")
    publish(operator_client, slug="castle", workflow="castle")

    inputs = {"prompt": "a keep by the sea", "sampler": {"steps": 2, "cfg": 5.5}}
    response = api_client.post(f"{URL}castle/run", {"inputs": inputs, "wait": 30}, format="json")

    assert response.status_code == 200, response.json()
    job = response.json()
    assert job["state"] == "succeeded" and list(job["outputs_by_name"]) == ["images"]
    assert job["outputs_by_name"]["images"][0]["url"] == job["outputs"][0]["url"]
    sent = fake.last_prompt_body["prompt"]
    assert sent["6"]["inputs"]["text"] == "a keep by the sea"
    sampler = sent["3"]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["seed"]) == (2, 5.5, 424242)
    assert "17" not in sent and sent["9"]["inputs"]["images"] == ["8", 0]  # [!bypass] upscale gone, save rewired
    assert sent["4"]["class_type"] == "CheckpointLoaderSimple"  # the [!cache] loader is sent
    assert sent["3"]["inputs"]["model"] == ["4", 0] and "10" not in sent  # the editor-bypassed LoRA too


@pytest.mark.django_db(transaction=True)
def test_an_api_workflow_round_trips_with_its_named_output(worker, fakes, operator_client, api_client):
    register(fakes(), "gpu")
    imported(operator_client, "flux", "flux_dev.api")
    publish(operator_client, slug="flux", workflow="flux")

    response = api_client.post(f"{URL}flux/run", {"inputs": {"steps": 2, "size": {"width": 256}}, "wait": 30},
                               format="json")  # fmt: skip

    assert response.status_code == 200, response.json()
    [output] = response.json()["outputs_by_name"]["image"]
    assert output["width"] == 256


@pytest.mark.django_db(transaction=True)
def test_cache_nodes_of_other_endpoints_ride_along_to_keep_their_models_warm(
    worker, fakes, builtin_endpoints, operator_client, api_client
):
    fake = fakes()
    register(fake, "gpu")
    graph = fixture("sd15_features.ui")
    [loader] = [n for n in graph["nodes"] if n["type"] == "CheckpointLoaderSimple"]
    loader["widgets_values"] = ["sd_xl_base_1.0.safetensors"]
    assert (
        operator_client.post("/api/workflows/", {"name": "castle", "graph": graph}, format="json").status_code
        == 201
    )
    publish(operator_client, slug="castle", workflow="castle")

    response = api_client.post(f"{URL}sd15-txt2img/run", {"inputs": {"prompt": "x"}, "wait": 30}, format="json")

    assert response.json()["state"] == "succeeded", response.json()["error"]
    sent = fake.last_prompt_body["prompt"]
    loaded = sorted(n["inputs"]["ckpt_name"] for n in sent.values() if n["class_type"] == "CheckpointLoaderSimple")
    assert loaded == ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"]
