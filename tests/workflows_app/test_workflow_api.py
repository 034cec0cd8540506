"""POST/GET /api/workflows/: import in API and UI format, versions, and every fault at once."""

from __future__ import annotations

import copy
import json

import pytest

from tests.workflows_app.test_importer import fixture
from workflows_app.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

URL = "/api/workflows/"


def test_importing_a_ui_workflow_makes_version_1(operator_client, operator):
    response = operator_client.post(URL, {"name": "castle", "graph": fixture("sd15_features.ui")}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["workflow"], body["number"], body["source_format"]) == ("castle", 1, "ui")
    assert body["inputs"] == ["sampler.steps", "sampler.cfg", "prompt"] and body["outputs"] == ["images"]
    version = WorkflowVersion.objects.get(id=body["id"])
    assert version.source == fixture("sd15_features.ui") and "10" not in version.graph
    assert version.created_by == operator


def test_importing_again_under_the_same_name_makes_a_new_version(operator_client):
    operator_client.post(URL, {"name": "sd", "graph": fixture("sd15_txt2img.api")}, format="json")
    second = operator_client.post(URL, {"name": "sd", "graph": fixture("sd15_txt2img.ui")}, format="json")

    assert second.status_code == 201 and second.json()["number"] == 2
    workflow = Workflow.objects.get(name="sd")
    assert [v.number for v in workflow.versions.all()] == [2, 1]

    listed = operator_client.get(URL).json()
    assert [len(w["versions"]) for w in listed if w["name"] == "sd"] == [2]
    detail = operator_client.get(f"{URL}{workflow.id}").json()
    assert [v["number"] for v in detail["versions"]] == [2, 1] and detail["endpoints"] == []


def test_a_broken_workflow_lists_every_problem(operator_client):
    graph = copy.deepcopy(fixture("sd15_txt2img.api"))
    graph["1"] = {"class_type": "NoSuchNode", "inputs": {}}
    graph["3"]["inputs"]["model"] = ["99", 0]
    del graph["5"]["inputs"]["width"]
    graph["6"]["_meta"]["title"] = "Prompt [prompt] [!turbo]"
    graph["7"]["_meta"]["title"] = "Negative [prompt]"

    response = operator_client.post(URL, {"name": "broken", "graph": graph}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_workflow"
    assert body["errors"] == [
        "node 3 (KSampler).model: links to missing node '99'",
        "node 5 (EmptyLatentImage): missing required input 'width'",
        "node 1: unknown class 'NoSuchNode'",
        "node 6: unknown tag [!turbo]: the ! tags are [!bypass] and [!cache]",
    ]
    assert not Workflow.objects.filter(name="broken").exists()


def test_duplicate_names_and_cycles_are_named(operator_client):
    graph = copy.deepcopy(fixture("sd15_txt2img.api"))
    graph["7"]["_meta"]["title"] = "Negative [prompt]"
    graph["8"]["inputs"]["samples"] = ["3", 0]
    graph["3"]["inputs"]["latent_image"] = ["8", 0]

    errors = operator_client.post(URL, {"name": "x", "graph": graph}, format="json").json()["errors"]

    assert "input name 'prompt' is used by node 6 and node 7" in errors
    assert "node 3 (KSampler).latent_image: gets IMAGE from node 8 slot 0 but takes LATENT" in errors
    assert any(error.startswith("the links form a cycle through nodes") for error in errors)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"graph": {}}, "name"), ({"name": "x"}, "graph"), ({"name": "", "graph": {}}, "name")],
)
def test_a_malformed_body_is_a_400_naming_the_field(operator_client, body, field):
    response = operator_client.post(URL, body, format="json")

    assert response.status_code == 400 and field in response.json()


@pytest.mark.parametrize("graph", [[], {}, "workflow", {"nodes": 3}, {"a": {"b": 1}}])
def test_something_that_is_not_a_workflow_is_refused(operator_client, graph):
    response = operator_client.post(URL, {"name": "x", "graph": graph}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0].startswith("not a ComfyUI workflow")


def test_only_staff_see_or_import_workflows(api_client, anon_client):
    assert api_client.get(URL).status_code == 403
    body = {"name": "x", "graph": fixture("sd15_txt2img.api")}
    assert api_client.post(URL, body, format="json").status_code == 403
    assert anon_client.get(URL).status_code == 401


def upload(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="application/json")


def test_the_admin_imports_a_file_and_shows_every_error(client, operator):
    client.force_login(operator)
    page = "/admin/workflows_app/workflow/import/"
    assert client.get(page).status_code == 200
    assert "Import a workflow file" in client.get("/admin/workflows_app/workflow/").text

    good = json.dumps(fixture("sd15_txt2img.ui")).encode()
    response = client.post(page, {"name": "sd", "file": upload("workflow.json", good)})

    assert response.status_code == 302
    assert Workflow.objects.get(name="sd").latest_version.source_format == "ui"

    broken = fixture("sd15_txt2img.api")
    broken["1"] = {"class_type": "Nope", "inputs": {}}
    broken["6"]["_meta"]["title"] = "[!nope]"
    response = client.post(page, {"name": "bad", "file": upload("api.json", json.dumps(broken).encode())})
    assert response.status_code == 200
    assert "node 1: unknown class &#x27;Nope&#x27;" in response.text and "unknown tag [!nope]" in response.text
    not_json = client.post(page, {"name": "bad", "file": upload("x.json", b"{nope")})
    assert "The file is not JSON" in not_json.text


def test_the_admin_publish_action_publishes_the_latest_version(client, operator, operator_client):
    from workflows_app.models import Endpoint

    operator_client.post(URL, {"name": "My SD", "graph": fixture("sd15_txt2img.api")}, format="json")
    workflow = Workflow.objects.get(name="My SD")
    client.force_login(operator)

    client.post("/admin/workflows_app/workflow/", {"action": "publish", "_selected_action": [workflow.id]})

    assert Endpoint.objects.get(slug="my-sd").version == workflow.latest_version
