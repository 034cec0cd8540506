"""JSON Schema (draft 2020-12) of an endpoint's request body, accepting exactly what `validate_inputs` does.

One property per tag name. A one-widget tag takes its value flat or, as in ComfyUI-Fast-API,
nested under its widget name (`anyOf`); a multi-widget tag is an object of its widgets. The
keywords stay inside what OpenAPI 3.0 also knows (`enum`, not `const`; `format: byte` for
base64), so the schema can be embedded there once `$schema` is dropped.
"""

from __future__ import annotations

from typing import Any

from workflows_app.params import EndpointParams, InputSpec, Param

DIALECT = "https://json-schema.org/draft/2020-12/schema"

FILE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "format": "uri", "pattern": "^https?://", "description": "URL of the file"},
        {
            "type": "object",
            "properties": {
                "type": {"enum": ["file"]},
                "name": {"type": "string", "minLength": 1, "pattern": "^[^/\\\\]+$"},
                "content": {"type": "string", "format": "byte", "minLength": 1},
            },
            "required": ["type", "name", "content"],
            "additionalProperties": False,
            "description": "the file itself, base64-encoded",
        },
    ]
}


def input_schema(params: EndpointParams) -> dict[str, Any]:
    """The JSON Schema of a request body for an endpoint with these inputs."""
    properties = {name: _group_schema(group) for name, group in params.groups.items()}
    required = [name for name, group in params.groups.items() if any(p.spec.is_file for p in group)]
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    return {**schema, "required": required} if required else schema


def _group_schema(group: tuple[Param, ...]) -> dict[str, Any]:
    nested = _object_schema(group)
    if len(group) == 1 and group[0].flat:
        return {"anyOf": [value_schema(group[0]), nested]}
    return nested


def _object_schema(group: tuple[Param, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {param.widget: value_schema(param) for param in group},
        "additionalProperties": False,
    }
    required = [param.widget for param in group if param.spec.is_file]
    return {**schema, "required": required} if required else schema


def value_schema(param: Param) -> dict[str, Any]:
    """The schema of one input's value, with its bounds and the graph's value as default."""
    spec = param.spec
    schema = {**_type_schema(spec), "description": f"{param.widget} of node {param.node_id}"}
    if spec.default is not None and not spec.is_file:
        schema["default"] = spec.default
    return schema


def _type_schema(spec: InputSpec) -> dict[str, Any]:
    if spec.is_file:
        return dict(FILE_SCHEMA)
    if spec.type in ("INT", "FLOAT"):
        bounds = {"minimum": spec.minimum, "maximum": spec.maximum}
        kind = "integer" if spec.type == "INT" else "number"
        return {"type": kind, **{key: value for key, value in bounds.items() if value is not None}}
    if spec.type == "STRING":
        schema: dict[str, Any] = {"type": "string"}
        schema.update({"maxLength": spec.max_length} if spec.max_length is not None else {})
        return {**schema, "x-multiline": True} if spec.multiline else schema
    if spec.type == "BOOLEAN":
        return {"type": "boolean"}
    if spec.choices:
        return {"enum": list(spec.choices)}
    return {"type": "string"}
