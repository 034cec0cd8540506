"""/api/schema/: a valid OpenAPI document with one operation per published endpoint, kept current."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from tests.workflows_app.test_importer import fixture

pytestmark = pytest.mark.django_db


def schema(client) -> dict:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def publish(client, slug: str, graph: str, **fields) -> None:
    client.post("/api/workflows/", {"name": slug, "graph": fixture(graph)}, format="json")
    response = client.post("/api/endpoints/", {"slug": slug, "workflow": slug, **fields}, format="json")
    assert response.status_code in (200, 201), response.json()


def test_the_schema_is_valid_openapi_with_an_operation_per_endpoint(operator_client, builtin_endpoints):
    publish(operator_client, "castle", "sd15_features.ui", title="Castles", output_mode="base64")

    document = schema(operator_client)

    validate(document)
    paths = document["paths"]
    assert "/api/endpoints/{slug}/run" not in paths and "post" not in paths["/api/endpoints/{slug}"]
    for slug in ["castle", "sd15-txt2img", "sdxl-txt2img", "flux-txt2img", "sd15-img2img", "sd15-inpaint"]:
        assert "post" in paths[f"/api/endpoints/{slug}/run"] and "post" in paths[f"/api/endpoints/{slug}"]
    run = paths["/api/endpoints/castle/run"]["post"]
    assert run["summary"] == "Castles" and run["operationId"] == "endpoint_run.castle"
    assert run["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EndpointRunRequest.castle"
    }
    assert run["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobDetail"
    }


def test_an_annotated_operation_lists_its_inputs_with_types_and_bounds(operator_client):
    publish(operator_client, "castle", "sd15_features.ui", output_mode="base64")

    components = schema(operator_client)["components"]["schemas"]

    envelope = components["EndpointRunRequest.castle"]["properties"]
    assert envelope["inputs"] == {"$ref": "#/components/schemas/EndpointInputs.castle"}
    assert {"wait", "webhook_url", "priority"} <= set(envelope)
    inputs = components["EndpointInputs.castle"]
    assert set(inputs["properties"]) == {"prompt", "sampler"} and inputs["additionalProperties"] is False
    sampler = inputs["properties"]["sampler"]["properties"]
    assert sampler["steps"] == {
        "type": "integer", "minimum": 1, "maximum": 10000, "default": 20, "description": "steps of node 3",
    }  # fmt: skip
    assert (sampler["cfg"]["type"], sampler["cfg"]["minimum"], sampler["cfg"]["maximum"]) == ("number", 0.0, 100.0)
    prompt = inputs["properties"]["prompt"]["anyOf"][0]
    assert prompt["type"] == "string" and prompt["x-multiline"] is True
    outputs = components["EndpointOutputs.castle"]
    assert outputs["properties"] == {"images": {"type": "array", "items": {"type": "string", "format": "byte"}}}


def test_the_schema_follows_publishing(operator_client):
    assert "/api/endpoints/sd/run" not in schema(operator_client)["paths"]

    publish(operator_client, "sd", "sd15_txt2img.api", output_mode="url")
    assert "/api/endpoints/sd/run" in schema(operator_client)["paths"]
    items = schema(operator_client)["components"]["schemas"]["EndpointOutputs.sd"]["properties"][
        "my awesome image"
    ]
    assert items["items"]["format"] == "uri"

    operator_client.patch("/api/endpoints/sd", {"enabled": False}, format="json")
    assert "/api/endpoints/sd/run" not in schema(operator_client)["paths"]


def test_swagger_ui_is_served_to_signed_in_users(operator_client, anon_client):
    assert operator_client.get("/api/docs/").status_code == 200
    assert anon_client.get("/api/schema/?format=json").status_code in (401, 403)
