"""Per-endpoint OpenAPI: a drf-spectacular postprocessing hook that gives every endpoint its own operations.

The views document `POST /api/endpoints/{slug}/run` (and the ComfyUI-Fast-API `POST /api/endpoints/{slug}`)
once, for any slug. This hook replaces each with one operation per enabled endpoint, read from the
database on every schema request (so a publish shows at once), whose request body is that endpoint's
`input_schema` and whose response names its outputs. Components are `EndpointInputs.<slug>`,
`EndpointRunRequest.<slug>` and `EndpointOutputs.<slug>`: slugs are unique and only hold characters
OpenAPI allows in component names, so the names are unique and valid.
"""

from __future__ import annotations

import copy
from typing import Any

from django.db import DatabaseError

from workflows_app.models import Endpoint
from workflows_app.params import WorkflowError
from workflows_app.schema import input_schema
from workflows_app.services import version_params

RUN, FASTAPI = "/api/endpoints/{slug}/run", "/api/endpoints/{slug}"


def endpoint_operations(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: expand the endpoint run operations per published endpoint."""
    paths, schemas = result.setdefault("paths", {}), result.setdefault("components", {}).setdefault("schemas", {})
    run = paths.pop(RUN, {}).get("post")
    fastapi = paths.get(FASTAPI, {}).pop("post", None)
    try:
        endpoints = list(Endpoint.objects.enabled().select_related("version"))
    except DatabaseError:
        return result  # no database (e.g. `manage.py spectacular` at build time): the generic operations only
    for endpoint in endpoints:
        try:
            params = version_params(endpoint.version_id)
        except WorkflowError:
            continue
        schemas.update(_components(endpoint, params, schemas.get("EndpointRunInput")))
        if run:
            paths[f"/api/endpoints/{endpoint.slug}/run"] = {"post": _run_operation(run, endpoint)}
        if fastapi:
            paths.setdefault(f"/api/endpoints/{endpoint.slug}", {})["post"] = _fastapi_operation(fastapi, endpoint)
    return result


def _components(endpoint: Endpoint, params: Any, envelope: dict[str, Any] | None) -> dict[str, Any]:
    slug = endpoint.slug
    inputs = {key: value for key, value in input_schema(params).items() if key != "$schema"}
    request = copy.deepcopy(envelope) if envelope else {"type": "object", "properties": {}}
    request["properties"]["inputs"] = {"$ref": f"#/components/schemas/EndpointInputs.{slug}"}
    file = {"type": "string", "format": "byte" if endpoint.output_mode == Endpoint.OutputMode.BASE64 else "uri"}
    names = [output.name for output in params.outputs]
    outputs: dict[str, Any] = {
        "type": "object",
        "properties": {name: {"type": "array", "items": file} for name in names},
    }
    if not names:
        outputs["additionalProperties"] = {"type": "array", "items": file, "description": "files by node id"}
    return {
        f"EndpointInputs.{slug}": {**inputs, "title": f"Inputs of {slug}"},
        f"EndpointRunRequest.{slug}": request,
        f"EndpointOutputs.{slug}": outputs,
    }


def _run_operation(template: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    operation = _operation(template, endpoint, f"endpoint_run.{endpoint.slug}")
    operation["requestBody"] = _json_body(f"EndpointRunRequest.{endpoint.slug}")
    return operation


def _fastapi_operation(template: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    operation = _operation(template, endpoint, f"endpoint_fastapi.{endpoint.slug}")
    operation["summary"] = f"{endpoint.title or endpoint.slug} (ComfyUI-Fast-API style)"
    operation["requestBody"] = _json_body(f"EndpointInputs.{endpoint.slug}")
    ok = {"$ref": f"#/components/schemas/EndpointOutputs.{endpoint.slug}"}
    operation["responses"]["200"] = {
        "description": "Output name → files",
        "content": {"application/json": {"schema": ok}},
    }
    return operation


def _operation(template: dict[str, Any], endpoint: Endpoint, operation_id: str) -> dict[str, Any]:
    operation = copy.deepcopy(template)
    operation["operationId"] = operation_id
    operation["summary"] = endpoint.title or endpoint.slug
    operation["description"] = endpoint.description or operation.get("description", "")
    operation["tags"] = ["endpoints"]
    operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "slug"]
    operation["responses"].setdefault("400", {"description": "Invalid inputs: every bad field, value and rule."})
    return operation


def _json_body(component: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }
