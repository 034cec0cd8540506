"""UI-format (workflow.json) → API-format conversion and the graph checks, against exported fixtures."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from workflows_app.importer import api_graph_problems, detect_format, import_graph, ui_to_api, widget_slots
from workflows_app.objectinfo import object_info
from workflows_app.params import WorkflowError, collect_params

FIXTURES = Path(__file__).parent / "fixtures"
EXPORTS = ["sd15_txt2img", "sd15_img2img", "sdxl_refiner", "flux_dev"]


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def problems_of(data: dict) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        import_graph(data, object_info())
    return caught.value.messages


@pytest.mark.parametrize("name", EXPORTS)
def test_a_ui_export_converts_to_its_api_export(name):
    kind, graph = import_graph(fixture(f"{name}.ui"), object_info())

    assert kind == "ui"
    assert graph == fixture(f"{name}.api")
    collect_params(graph, object_info())


@pytest.mark.parametrize("name", EXPORTS)
def test_an_api_export_is_taken_as_it_is(name):
    assert import_graph(fixture(f"{name}.api"), object_info()) == ("api", fixture(f"{name}.api"))


def test_formats_are_told_apart_and_anything_else_is_refused():
    assert detect_format(fixture("sd15_txt2img.ui")) == "ui"
    assert detect_format(fixture("sd15_txt2img.api")) == "api"
    for junk in [[], {}, "x", {"a": 1}, {"nodes": "no"}]:
        with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
            detect_format(junk)


def test_widget_slots_include_control_and_upload_values():
    info = object_info()
    assert widget_slots(info["KSampler"]) == [
        "seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise",
    ]  # fmt: skip
    assert widget_slots(info["LoadImageMask"]) == ["image", "channel", "upload"]
    assert widget_slots(info["VAEDecode"]) == []


def test_reroutes_primitives_notes_muted_and_bypassed_nodes():
    kind, graph = import_graph(fixture("sd15_features.ui"), object_info())

    assert set(graph) == {"3", "4", "5", "6", "7", "8", "9", "17"}  # no LoRA, reroute, primitive, notes, preview
    assert graph["3"]["inputs"]["model"] == ["4", 0]  # reroute → bypassed LoRA → its model input
    assert graph["6"]["inputs"]["clip"] == ["4", 1]  # bypassed LoRA's CLIP output → its clip input
    assert graph["3"]["inputs"]["seed"] == 424242  # the primitive's value, not the stale widget value
    assert graph["3"]["inputs"]["steps"] == 20 and graph["3"]["inputs"]["sampler_name"] == "euler"
    assert graph["9"]["inputs"]["images"] == ["17", 0]
    assert graph["17"]["_meta"]["title"] == "Upscale for preview [!bypass]"
    assert graph["8"]["_meta"]["title"] == "VAE Decode"  # untitled nodes get the display name

    params = collect_params(graph, object_info())
    assert [p.field for p in params.inputs] == ["sampler.steps", "sampler.cfg", "prompt"]  # node id order
    assert params.bypass_ids == ("17",) and params.cache == ("4",)


def test_a_converted_widget_fed_by_a_node_becomes_a_link():
    data = fixture("sd15_features.ui")
    primitive = next(node for node in data["nodes"] if node["type"] == "PrimitiveNode")
    outputs = [{"name": "INT", "type": "INT", "links": [16]}]
    primitive.update(type="PrimitiveInt", widgets_values=[7, "fixed"], outputs=outputs)

    graph, errors = ui_to_api(data, object_info())

    assert errors == [] and graph["3"]["inputs"]["seed"] == ["16", 0]
    assert graph["16"]["inputs"] == {"value": 7}


def test_dict_widget_values_and_object_links_are_read():
    data = fixture("sd15_txt2img.ui")
    latent = next(node for node in data["nodes"] if node["type"] == "EmptyLatentImage")
    latent["widgets_values"] = {"width": 640, "height": 384, "batch_size": 2}
    data["links"] = [
        {"id": link[0], "origin_id": link[1], "origin_slot": link[2], "target_id": link[3], "target_slot": link[4],
         "type": link[5]}
        for link in data["links"]
    ]  # fmt: skip

    _, graph = import_graph(data, object_info())

    assert graph == {**fixture("sd15_txt2img.api"), "5": {**graph["5"]}}
    assert graph["5"]["inputs"] == {"width": 640, "height": 384, "batch_size": 2}


def test_every_problem_of_a_ui_workflow_is_listed_at_once():
    data = fixture("sd15_txt2img.ui")
    nodes = {node["id"]: node for node in data["nodes"]}
    nodes[7]["type"] = "NoSuchNode"
    nodes[5]["widgets_values"] = [512, 512]
    nodes[8]["inputs"][1]["link"] = 999  # VAE from a link that does not exist
    data["links"].append([50, 77, 0, 9, 0, "IMAGE"])
    nodes[9]["inputs"][0]["link"] = 50  # from a node that does not exist

    problems = problems_of(data)

    assert problems == [
        "node 5 (EmptyLatentImage): 2 widget values, but the class has 3 widget slots (width, height, batch_size)",
        "node 8 (VAEDecode) input 'vae': uses link 999, which is not in the workflow's links",
        "node 9 (SaveImage) input 'images': link 50 comes from missing node 77",
        "node 5 (EmptyLatentImage): missing required input 'width'",
        "node 5 (EmptyLatentImage): missing required input 'height'",
        "node 5 (EmptyLatentImage): missing required input 'batch_size'",
        "node 7: unknown class 'NoSuchNode'",
        "node 8 (VAEDecode): missing required input 'vae'",
        "node 9 (SaveImage): missing required input 'images'",
    ]


def test_every_problem_of_an_api_graph_is_listed_at_once():
    graph = copy.deepcopy(fixture("sd15_txt2img.api"))
    graph["1"] = {"class_type": "Nope", "inputs": {}}
    graph["3"]["inputs"]["latent_image"] = ["42", 0]
    del graph["6"]["inputs"]["clip"]
    graph["7"]["inputs"]["clip"] = ["3", 0]
    graph["4"]["inputs"]["ckpt_name"] = ["8", 0]

    problems = api_graph_problems(graph, object_info())

    assert "node 1: unknown class 'Nope'" in problems
    assert "node 3 (KSampler).latent_image: links to missing node '42'" in problems
    assert "node 6 (CLIPTextEncode): missing required input 'clip'" in problems
    assert "node 7 (CLIPTextEncode).clip: gets LATENT from node 3 slot 0 but takes CLIP" in problems
    assert any(p.startswith("the links form a cycle through nodes") for p in problems)
    assert len(problems) == 6


def test_a_bypassed_node_without_a_matching_input_is_reported():
    data = fixture("sd15_features.ui")
    decode = next(node for node in data["nodes"] if node["type"] == "VAEDecode")
    decode["mode"] = 4  # nothing of type IMAGE goes into a VAE decode

    problems = problems_of(data)

    assert any("node 8 (VAEDecode) is bypassed but has no IMAGE input" in problem for problem in problems)


def test_subgraphs_are_refused_by_name():
    data = fixture("sd15_txt2img.ui")
    data["definitions"] = {"subgraphs": [{"id": "3e1c-sub", "nodes": []}]}
    data["nodes"][0]["type"] = "3e1c-sub"

    assert "subgraphs are not supported" in problems_of(data)[0]


def test_bypassed_nodes_feeding_each_other_are_an_error_not_a_hang():
    graph = fixture("sd15_txt2img.api")
    graph["20"] = {"class_type": "ImageInvert", "inputs": {"image": ["21", 0]}, "_meta": {"title": "[!bypass]"}}
    graph["21"] = {"class_type": "ImageInvert", "inputs": {"image": ["20", 0]}, "_meta": {"title": "[!bypass]"}}
    graph["9"]["inputs"]["images"] = ["20", 0]

    with pytest.raises(WorkflowError) as caught:
        collect_params(graph, object_info())

    assert caught.value.messages == [
        "bypassed nodes 20, 21 pass their inputs round in a loop, used by node 9.images"
    ]


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        (("nodes", 0), "KSampler", "nodes[0]: not a node with an id and a type"),
        (("nodes", 0, "type"), ["KSampler"], "nodes[0]: not a node with an id and a type"),
        (("nodes", 0, "inputs"), {"model": 1}, "node 3: inputs must be a list of {name, type, link} objects"),
        (("nodes", 0, "inputs", 0, "link"), [1], "node 3: input 'model' has a malformed link or widget"),
        (("nodes", 0, "widgets_values"), 7, "node 3: widgets_values must be a list or an object"),
        (("links", 0), [1, "4", "zero", 3, 0, "MODEL"], "uses link 1, which is not in the workflow's links"),
        (("links",), {"1": 2}, "uses link 1, which is not in the workflow's links"),
    ],
)
def test_a_malformed_ui_workflow_is_a_precise_error(where, value, problem):
    data = fixture("sd15_txt2img.ui")
    target = data
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value

    assert any(problem in message for message in problems_of(data))


def test_a_malformed_api_node_is_a_precise_error():
    graph = fixture("sd15_txt2img.api")
    graph["6"]["class_type"] = ["CLIPTextEncode"]
    graph["9"]["_meta"] = "Save [images]"

    problems = problems_of(graph)

    assert "node 6: unknown class ['CLIPTextEncode']" in problems
