"""The JSON Schema of an endpoint's inputs: shape, bounds, defaults, and agreement with validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from workflows_app.builtin import BUILTINS
from workflows_app.params import EndpointParams, collect_params
from workflows_app.render import InputError, validate_inputs
from workflows_app.schema import FILE_SCHEMA, input_schema

OBJECT_INFO = json.loads((Path(__file__).parents[1] / "data" / "object_info.json").read_text())
SEED_MAX = 18446744073709551615
GRAPHS = {builtin.slug: builtin.graph for builtin in BUILTINS}
FILE = {"type": "file", "name": "cat.png", "content": "aGVsbG8="}


def params_of(slug: str = "sd15-txt2img", **titles: str) -> EndpointParams:
    graph = copy.deepcopy(GRAPHS[slug])
    for node_id, title in titles.items():
        graph[node_id.removeprefix("n")]["_meta"]["title"] = title
    return collect_params(graph, OBJECT_INFO)


def flat(schema: dict, name: str) -> dict:
    return schema["properties"][name]["anyOf"][0]


def accepted_by_validation(params: EndpointParams, body: object) -> bool:
    try:
        validate_inputs(params, body)
    except InputError:
        return False
    return True


def test_the_top_level_is_a_closed_2020_12_object():
    schema = input_schema(params_of())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (schema["type"], schema["additionalProperties"]) == ("object", False)
    assert "required" not in schema
    assert list(schema["properties"]) == list(params_of().groups)


def test_a_one_widget_tag_takes_its_value_flat_or_nested():
    prompt = input_schema(params_of())["properties"]["prompt"]
    value = {
        "type": "string",
        "maxLength": 20_000,
        "x-multiline": True,
        "description": "text of node 6",
        "default": "",
    }
    assert prompt == {
        "anyOf": [value, {"type": "object", "properties": {"text": value}, "additionalProperties": False}]
    }


def test_numbers_carry_their_bounds_and_the_graphs_value():
    schema = input_schema(params_of())
    assert flat(schema, "width") == {
        "type": "integer",
        "minimum": 16,
        "maximum": 16384,
        "description": "width of node 5",
        "default": 512,
    }
    assert flat(schema, "cfg") | {"description": ""} == {
        "type": "number",
        "minimum": 0.0,
        "maximum": 100.0,
        "default": 7.0,
        "description": "",
    }


def test_the_seed_maximum_is_an_exact_integer():
    seed = flat(input_schema(params_of()), "seed")
    assert seed["maximum"] == SEED_MAX and isinstance(seed["maximum"], int)
    assert '"maximum": 18446744073709551615' in json.dumps(seed)


def test_combos_are_enums_and_fleet_files_without_choices_are_strings():
    schema = input_schema(params_of())
    sampler = flat(schema, "sampler")
    assert sampler["enum"] == OBJECT_INFO["KSampler"]["input"]["required"]["sampler_name"][0]
    assert sampler["default"] == "euler"
    assert flat(schema, "checkpoint")["type"] == "string"
    assert "enum" not in flat(schema, "checkpoint")


def test_booleans():
    graph = {
        "1": {"class_type": "GrowMask", "inputs": {"mask": ["2", 0], "tapered_corners": False}, "_meta": {}},
        "2": {"class_type": "LoadImageMask", "inputs": {"image": "m.png", "channel": "red"}, "_meta": {}},
    }
    graph["1"]["_meta"]["title"] = "[taper:tapered_corners]"
    schema = input_schema(collect_params(graph, OBJECT_INFO))
    assert flat(schema, "taper") == {
        "type": "boolean",
        "description": "tapered_corners of node 1",
        "default": False,
    }


def test_a_multi_widget_tag_is_a_nested_object():
    sampler = input_schema(params_of(n3="KSampler [my sampler:seed,steps]"))["properties"]["my sampler"]
    assert sampler["type"] == "object"
    assert sampler["additionalProperties"] is False
    assert list(sampler["properties"]) == ["seed", "steps"]
    assert sampler["properties"]["seed"]["maximum"] == SEED_MAX
    assert "required" not in sampler


def test_file_inputs_are_required_urls_or_base64_objects():
    schema = input_schema(params_of("sd15-inpaint"))
    assert schema["required"] == ["image", "mask"]
    image = schema["properties"]["image"]["anyOf"]
    assert image[0] == {**FILE_SCHEMA, "description": "image of node 10"}
    assert image[1]["required"] == ["image"]
    assert "default" not in image[0]
    url, upload = FILE_SCHEMA["oneOf"]
    assert url["pattern"] == "^https?://"
    assert upload["required"] == ["type", "name", "content"]
    assert upload["properties"]["content"]["format"] == "byte"


def test_it_uses_only_keywords_openapi_3_0_knows_too():
    text = json.dumps(input_schema(params_of("sd15-inpaint", n3="KSampler [k:seed,cfg]")))
    for keyword in ('"const"', '"contentEncoding"', '"prefixItems"', '"$defs"', '"type": ['):
        assert keyword not in text


def test_an_endpoint_without_inputs_takes_an_empty_object():
    schema = input_schema(EndpointParams())
    assert (schema["properties"], schema["additionalProperties"]) == ({}, False)


@pytest.mark.parametrize("builtin", BUILTINS, ids=lambda builtin: builtin.slug)
def test_every_builtin_schema_is_valid(builtin):
    Draft202012Validator.check_schema(input_schema(collect_params(builtin.graph, OBJECT_INFO)))


BODIES = [
    {},
    {"prompt": "a cat", "width": 768, "seed": 5},
    {"prompt": {"text": "a cat"}, "seed": {"seed": SEED_MAX}},
    {"seed": SEED_MAX + 1},
    {"seed": -1},
    {"seed": True},
    {"seed": 5.0},
    {"seed": 5.5},
    {"seed": {"sed": 1}},
    {"width": 8},
    {"width": 16385},
    {"cfg": 6},
    {"cfg": 101},
    {"cfg": "7"},
    {"prompt": "x" * 20_001},
    {"sampler": "euler"},
    {"sampler": "nope"},
    {"nope": 1},
    {"prompt": None},
]


@pytest.mark.parametrize("body", BODIES, ids=lambda body: json.dumps(body)[:40])
def test_the_schema_accepts_what_validation_accepts(body: dict):
    params = params_of()
    valid = Draft202012Validator(input_schema(params)).is_valid(body)
    assert valid == accepted_by_validation(params, body)


FILE_BODIES = [
    {},
    {"image": "https://example.com/a.png"},
    {"image": FILE},
    {"image": {"image": FILE}},
    {"image": "cat.png"},
    {"image": {**FILE, "type": "url"}},
    {"image": {**FILE, "extra": 1}},
    {"image": {**FILE, "name": ""}},
    {"image": {**FILE, "name": "a/b.png"}},
    {"image": {**FILE, "content": ""}},
    {"image": {"image": "https://example.com/a.png"}, "denoise": 0.5},
    {"image": FILE, "denoise": 1.5},
]


@pytest.mark.parametrize("body", FILE_BODIES, ids=lambda body: json.dumps(body)[:40])
def test_the_schema_accepts_the_file_bodies_validation_accepts(body: dict):
    params = params_of("sd15-img2img")
    valid = Draft202012Validator(input_schema(params)).is_valid(body)
    assert valid == accepted_by_validation(params, body)
