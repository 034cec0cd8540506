"""Inputs → prompt: validation, seeds, writing values, bypass rewiring and cache nodes."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from workflows_app.builtin import BUILTINS
from workflows_app.params import Bypass, EndpointParams, WorkflowError, collect_params
from workflows_app.render import (
    RANDOM_SEED_MAX,
    InputError,
    cache_subgraph,
    merge_cache_nodes,
    randomize_seeds,
    render,
    validate_inputs,
)

OBJECT_INFO = json.loads((Path(__file__).parents[1] / "data" / "object_info.json").read_text())
SEED_MAX = 18446744073709551615
GRAPHS = {builtin.slug: builtin.graph for builtin in BUILTINS}
FILE = {"type": "file", "name": "cat.png", "content": "aGVsbG8="}


def params_of(slug: str = "sd15-txt2img", **titles: str):
    graph = copy.deepcopy(GRAPHS[slug])
    for node_id, title in titles.items():
        graph[node_id.removeprefix("n")]["_meta"]["title"] = title
    return graph, collect_params(graph, OBJECT_INFO)


def problems(params, inputs) -> list[dict]:
    with pytest.raises(InputError) as caught:
        validate_inputs(params, inputs)
    return caught.value.problems


def node(class_type: str, title: str = "", **inputs: object) -> dict:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


def test_flat_and_nested_forms_mean_the_same():
    _, params = params_of()
    flat = validate_inputs(params, {"prompt": "a cat", "width": 768, "seed": 5})
    nested = validate_inputs(params, {"prompt": {"text": "a cat"}, "width": {"width": 768}, "seed": {"seed": 5}})
    assert flat == nested == {"prompt": "a cat", "width": 768, "seed": 5}


def test_a_multi_widget_tag_is_addressed_nested():
    _, params = params_of(n3="KSampler [my sampler:seed,steps,cfg]")
    values = validate_inputs(params, {"my sampler": {"seed": 1234, "cfg": 6}})
    assert values == {"my sampler.seed": 1234, "my sampler.cfg": 6.0}
    assert problems(params, {"my sampler": 1234}) == [
        {"field": "my sampler", "value": 1234, "rule": "must be an object with the keys seed, steps, cfg"}
    ]
    assert problems(params, {"my sampler": {"denoise": 1}})[0]["field"] == "my sampler.denoise"


@pytest.mark.parametrize(
    ("inputs", "rule"),
    [
        ({"nope": 1}, "is not an input of this endpoint"),
        ({"seed": {"sed": 1}}, "is not an input of this endpoint"),
        ({"seed": True}, "must be an integer"),
        ({"seed": 5.5}, "must be an integer"),
        ({"seed": "5"}, "must be an integer"),
        ({"seed": -1}, "must be ≥ 0"),
        ({"seed": SEED_MAX + 1}, "must be ≤ 18446744073709551615"),
        ({"width": 8}, "must be ≥ 16"),
        ({"cfg": False}, "must be a number"),
        ({"cfg": "7"}, "must be a number"),
        ({"cfg": float("nan")}, "must be a finite number"),
        ({"cfg": float("inf")}, "must be a finite number"),
        ({"cfg": 100.5}, "must be ≤ 100.0"),
        ({"prompt": 5}, "must be a string"),
        ({"prompt": "x" * 20_001}, "must be at most 20000 characters"),
        ({"sampler": "nope"}, "must be one of euler, euler_cfg_pp"),
        ({"sampler": 1}, "must be one of"),
        ({"checkpoint": 3}, "must be a string"),
    ],
)
def test_each_rule(inputs: dict, rule: str):
    (problem,) = problems(params_of()[1], inputs)
    assert problem["rule"].startswith(rule)


def test_the_problem_names_the_field_and_the_value():
    assert problems(params_of()[1], {"steps": {"steps": 0}}) == [
        {"field": "steps", "value": 0, "rule": "must be ≥ 1"}
    ]


def test_every_bad_value_is_reported_at_once():
    _, params = params_of()
    found = problems(params, {"seed": -1, "width": True, "prompt": None, "bogus": 1, "steps": 3})
    assert [(p["field"], p["rule"]) for p in found] == [
        ("seed", "must be ≥ 0"),
        ("width", "must be an integer"),
        ("prompt", "must be a string"),
        ("bogus", "is not an input of this endpoint"),
    ]


def test_the_body_must_be_an_object():
    assert problems(params_of()[1], [1, 2]) == [{"field": "", "value": [1, 2], "rule": "must be a JSON object"}]


def test_steps_are_not_enforced_because_comfyui_rounds():
    assert validate_inputs(params_of()[1], {"width": 769, "cfg": 7.05}) == {"width": 769, "cfg": 7.05}


def test_a_seed_above_2_to_the_53_stays_exact():
    graph, params = params_of()
    values = validate_inputs(params, {"seed": SEED_MAX})
    assert values["seed"] == SEED_MAX and isinstance(values["seed"], int)
    prompt = render(graph, params, values)
    assert prompt["3"]["inputs"]["seed"] == SEED_MAX
    assert '"seed": 18446744073709551615' in json.dumps(prompt)


def test_floats_are_coerced_and_ints_kept():
    values = validate_inputs(params_of()[1], {"cfg": 7, "steps": 30, "width": 768.0})
    assert values == {"cfg": 7.0, "steps": 30, "width": 768}
    assert (type(values["cfg"]), type(values["steps"]), type(values["width"])) == (float, int, int)


def test_file_inputs_take_a_url_or_a_base64_object_and_are_required():
    _, params = params_of("sd15-inpaint")
    url = "https://example.com/cat.png"
    assert validate_inputs(params, {"image": url, "mask": FILE}) == {"image": url, "mask": FILE}
    assert validate_inputs(params, {"image": {"image": url}, "mask": {"image": FILE}})["image"] == url
    assert problems(params, {}) == [
        {"field": "image", "value": None, "rule": "is required"},
        {"field": "mask", "value": None, "rule": "is required"},
    ]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("cat.png", 'must be an http(s) URL or {"type": "file"'),
        ("ftp://example.com/cat.png", "must be an http(s) URL"),
        ({**FILE, "type": "url"}, "must be an http(s) URL"),
        ({"name": "cat.png", "content": "aGVsbG8="}, "must be an http(s) URL"),
        ({**FILE, "extra": 1}, "must be an http(s) URL"),
        ({**FILE, "name": ""}, "name must be a file name without a directory"),
        ({**FILE, "name": "../etc/passwd"}, "name must be a file name without a directory"),
        ({**FILE, "content": ""}, "content must be non-empty base64"),
        ({**FILE, "content": "not base64!"}, "content must be base64"),
        (42, "must be an http(s) URL"),
    ],
)
def test_bad_file_values(value: object, rule: str):
    (problem,) = problems(params_of("sd15-img2img")[1], {"image": value})
    assert (problem["field"], problem["rule"][: len(rule)]) == ("image", rule)


def test_long_values_are_shortened_in_problems():
    (problem,) = problems(params_of("sd15-img2img")[1], {"image": {**FILE, "content": "%" * 10_000}})
    assert problem["value"]["content"] == "%" * 200 + "…"


def test_randomize_seeds_fills_only_omitted_seeds():
    _, params = params_of()
    assert randomize_seeds(params, {"seed": 7}) == {"seed": 7}
    seeded = randomize_seeds(params, {"steps": 3}, rng=random.Random(1))
    assert seeded == {"steps": 3, "seed": random.Random(1).randint(0, RANDOM_SEED_MAX)}
    seeds = {randomize_seeds(params, {})["seed"] for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= seed <= 2**50 for seed in seeds)


def test_randomize_seeds_knows_noise_seed_and_nested_seeds():
    _, flux = params_of("flux-txt2img")
    assert set(randomize_seeds(flux, {})) == {"seed"}
    _, nested = params_of(n3="KSampler [k:seed,steps]")
    assert set(randomize_seeds(nested, {})) == {"k.seed"}


def test_render_writes_the_values_into_the_right_nodes():
    graph, params = params_of()
    before = copy.deepcopy(graph)
    prompt = render(graph, params, validate_inputs(params, {"prompt": "a cat", "width": 768, "seed": 5}))
    assert prompt["6"]["inputs"] == {"text": "a cat", "clip": ["4", 1]}
    assert prompt["5"]["inputs"] == {"width": 768, "height": 512, "batch_size": 1}
    assert prompt["3"]["inputs"]["seed"] == 5
    assert prompt["3"]["_meta"] == graph["3"]["_meta"]
    assert graph == before


def test_render_leaves_omitted_inputs_including_the_seed_at_the_graphs_value():
    graph, params = params_of()
    assert render(graph, params, {}) == graph


def test_render_wants_uploaded_file_names():
    graph, params = params_of("sd15-img2img")
    assert render(graph, params, {"image": "upload_1.png"})["10"]["inputs"]["image"] == "upload_1.png"
    with pytest.raises(InputError) as caught:
        render(graph, params, {"image": "https://example.com/a.png", "nope": 1})
    assert [p["field"] for p in caught.value.problems] == ["image", "nope"]


def bypass_graph() -> dict:
    return {
        "1": node("LoadImage", "Load", image="in.png"),
        "2": node("ImageScale", "Scale [!bypass]", image=["1", 0], width=64, height=64),
        "3": node("ImageInvert", "Invert [!bypass]", image=["2", 0]),
        "4": node("SaveImage", "Save [out]", images=["3", 0], filename_prefix="x"),
        "5": node("PreviewImage", "Preview", images=["2", 0]),
    }


def test_a_chain_of_bypassed_nodes_is_rewired_to_the_first_ones_input():
    graph = bypass_graph()
    prompt = render(graph, collect_params(graph, OBJECT_INFO), {})
    assert set(prompt) == {"1", "4", "5"}
    assert prompt["4"]["inputs"]["images"] == ["1", 0]
    assert prompt["5"]["inputs"]["images"] == ["1", 0]
    assert graph["4"]["inputs"]["images"] == ["3", 0]


def test_bypass_prefers_the_input_at_the_outputs_own_slot():
    graph = {
        "1": node("CLIPTextEncode", "", text="a", clip=["9", 1]),
        "2": node("CLIPTextEncode", "", text="b", clip=["9", 1]),
        "3": node("ControlNetApplyAdvanced", "[!bypass]", positive=["1", 0], negative=["2", 0]),
        "4": node("KSampler", "", positive=["3", 0], negative=["3", 1]),
        "9": node("CheckpointLoaderSimple", "", ckpt_name="m.safetensors"),
    }
    prompt = render(graph, collect_params(graph, OBJECT_INFO), {})
    assert (prompt["4"]["inputs"]["positive"], prompt["4"]["inputs"]["negative"]) == (["1", 0], ["2", 0])


def test_bypass_without_a_matching_input_says_which_node_and_output():
    broken = Bypass("2", "ImageScale", ("IMAGE",), (None,))
    with pytest.raises(WorkflowError) as caught:
        render(bypass_graph(), EndpointParams(bypass=(broken,)), {})
    message = "node 2 (ImageScale) is bypassed but has no IMAGE input to stand in for its output 0 (IMAGE)"
    assert caught.value.messages == [f"{message}, used by node 3.image", f"{message}, used by node 5.images"]


def cached_graph() -> tuple[dict, object]:
    graph = copy.deepcopy(GRAPHS["sd15-txt2img"])
    graph["4"]["_meta"]["title"] += " [!cache]"
    lora = {"lora_name": "l.safetensors", "strength_model": 1.0, "strength_clip": 1.0}
    graph["20"] = node("LoraLoader", "Lora [!cache]", model=["4", 0], clip=["4", 1], **lora)
    return graph, collect_params(graph, OBJECT_INFO)


def test_cache_nodes_stay_in_their_prompt_and_form_a_subgraph_with_what_they_need():
    graph, params = cached_graph()
    assert params.cache == ("4", "20")
    assert set(render(graph, params, {})) == set(graph)
    assert cache_subgraph(graph, params) == {"20": graph["20"], "4": graph["4"]}


def test_merging_cache_nodes_renames_colliding_ids_and_shares_identical_nodes():
    graph, params = cached_graph()
    subgraph = cache_subgraph(graph, params)
    other = {"4": node("VAELoader", "", vae_name="a"), "20": node("PreviewImage", "", images=["4", 0])}
    merged = merge_cache_nodes(other, [subgraph, subgraph])
    assert set(merged) == {"4", "20", "cache-4", "cache-20"}
    assert merged["cache-20"]["inputs"]["model"] == ["cache-4", 0]
    assert merged["cache-4"] == graph["4"]
    assert merge_cache_nodes(graph, [subgraph]) == graph


def test_render_adds_other_endpoints_cache_subgraphs():
    graph, params = cached_graph()
    _, flux_params = params_of("flux-txt2img", n12="Load diffusion model [!cache]")
    flux_cache = cache_subgraph(GRAPHS["flux-txt2img"], flux_params)
    prompt = render(graph, params, {"seed": 1}, cache_graphs=[flux_cache])
    assert prompt["cache-12"]["class_type"] == "UNETLoader"
    assert prompt["3"]["inputs"]["seed"] == 1


def test_a_cache_subgraph_must_be_closed():
    with pytest.raises(WorkflowError, match="links to nodes it lacks: 7"):
        merge_cache_nodes({}, [{"1": node("VAEDecode", "", samples=["7", 0], vae=["7", 2])}])


@pytest.mark.parametrize("slug", list(GRAPHS))
def test_every_builtin_renders(slug: str):
    graph, params = params_of(slug)
    files = {p.field: "upload.png" for p in params.inputs if p.spec.is_file}
    values = validate_inputs(params, {"prompt": "a cat", "steps": 4} | dict.fromkeys(files, FILE))
    prompt = render(graph, params, randomize_seeds(params, values) | files)
    assert set(prompt) == set(graph)
    assert prompt[params.groups["steps"][0].node_id]["inputs"]["steps"] == 4
    assert all(prompt[p.node_id]["inputs"][p.widget] == "upload.png" for p in params.inputs if p.spec.is_file)
