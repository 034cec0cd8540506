"""Title annotations: the tag parser and what a graph's titles expose."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from workflows_app.builtin import BUILTINS, exposed_inputs
from workflows_app.params import (
    AnnotationError,
    InputSpec,
    Output,
    Param,
    Tag,
    TitleTags,
    WorkflowError,
    collect_params,
    parse_title,
)

OBJECT_INFO = json.loads((Path(__file__).parents[1] / "data" / "object_info.json").read_text())
SEED_MAX = 18446744073709551615
SD15 = next(builtin for builtin in BUILTINS if builtin.slug == "sd15-txt2img").graph


def node(class_type: str, title: str = "", **inputs: object) -> dict:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


def sd15(**titles: str) -> dict:
    graph = copy.deepcopy(SD15)
    for node_id, item in graph.items():
        item["_meta"]["title"] = titles.get(f"n{node_id}", item["class_type"])
    return graph


def errors_of(graph: dict) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        collect_params(graph, OBJECT_INFO)
    return caught.value.messages


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("KSampler", TitleTags()),
        ("KSampler [sampler]", TitleTags((Tag("sampler"),))),
        ("KSampler [sampler:seed,steps]", TitleTags((Tag("sampler", ("seed", "steps")),))),
        ("KSampler [ my sampler : seed , steps ]", TitleTags((Tag("my sampler", ("seed", "steps")),))),
        ("[a:seed][b:steps] [ c ]", TitleTags((Tag("a", ("seed",)), Tag("b", ("steps",)), Tag("c")))),
        ("[pre] KSampler [post]", TitleTags((Tag("pre"), Tag("post")))),
        ("Loader [!cache]", TitleTags(cache=True)),
        ("Upscale [ ! bypass ] [!bypass]", TitleTags(bypass=True)),
        ("KSampler [s:seed] [!cache]", TitleTags((Tag("s", ("seed",)),), cache=True)),
        ("Texte [invite✨] [種子:seed]", TitleTags((Tag("invite✨"), Tag("種子", ("seed",))))),
        ("A (v2) {x} <y> [a-b.c d]", TitleTags((Tag("a-b.c d"),))),
        ("[name:with:colons]", TitleTags((Tag("name", ("with:colons",)),))),
    ],
)
def test_it_parses_titles(title: str, expected: TitleTags):
    assert parse_title(title) == expected


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("Upscale [!frobnicate]", "unknown tag [!frobnicate]"),
        ("Upscale [!Bypass]", "unknown tag [!Bypass]"),
        ("Upscale [!bypass:image]", "unknown tag [!bypass:image]"),
        ("Upscale [!]", "unknown tag [!]"),
        ("KSampler []", "tag [] has no name"),
        ("KSampler [  ]", "has no name"),
        ("KSampler [:seed]", "tag [:seed] has no name"),
        ("KSampler [s:]", "tag [s:] has an empty widget name"),
        ("KSampler [s:seed,]", "has an empty widget name"),
        ("KSampler [s:seed, ,steps]", "has an empty widget name"),
        ("KSampler [s:seed,seed]", "lists a widget twice"),
        ("KSampler [s:seed] [s:steps]", "[s] appears twice"),
        ("KSampler [my [inner] name]", "unbalanced or nested bracket"),
        ("KSampler [[double]]", "unbalanced or nested bracket"),
        ("KSampler [open", "unbalanced or nested bracket"),
        ("KSampler close] [s]", "unbalanced or nested bracket"),
    ],
)
def test_it_rejects_malformed_tags(title: str, message: str):
    with pytest.raises(AnnotationError) as caught:
        parse_title(title)
    assert message in str(caught.value)


def test_a_bare_tag_exposes_every_widget_of_the_node_nested():
    params = collect_params(sd15(n3="KSampler [sampler]"), OBJECT_INFO)
    assert [param.widget for param in params.inputs] == [
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
    ]
    assert {param.field for param in params.inputs} >= {"sampler.seed", "sampler.cfg"}
    assert not any(param.flat for param in params.inputs)


def test_a_widget_list_exposes_only_those_widgets():
    params = collect_params(sd15(n3="KSampler [sampler:steps, seed]"), OBJECT_INFO)
    assert [(p.name, p.node_id, p.widget, p.field) for p in params.inputs] == [
        ("sampler", "3", "steps", "sampler.steps"),
        ("sampler", "3", "seed", "sampler.seed"),
    ]
    assert params.groups == {"sampler": params.inputs}


def test_a_tag_that_resolves_to_one_widget_is_flat():
    params = collect_params(sd15(n6="Positive [prompt]", n3="KSampler [seed:seed]"), OBJECT_INFO)
    assert sorted((p.field, p.flat) for p in params.inputs) == [("prompt", True), ("seed", True)]


def test_specs_carry_types_bounds_and_the_graphs_values():
    graph = sd15(n3="KSampler [k]", n6="Positive [prompt]", n4="Loader [checkpoint]")
    graph["3"]["inputs"]["seed"] = SEED_MAX
    specs = {p.field: p.spec for p in collect_params(graph, OBJECT_INFO).inputs}
    assert specs["k.seed"] == InputSpec("INT", SEED_MAX, 0, SEED_MAX)
    assert isinstance(specs["k.seed"].maximum, int)
    assert specs["k.cfg"] == InputSpec("FLOAT", 7.0, 0.0, 100.0, 0.1)
    assert specs["k.sampler_name"].type == "COMBO"
    assert specs["k.sampler_name"].choices == tuple(
        OBJECT_INFO["KSampler"]["input"]["required"]["sampler_name"][0]
    )
    assert specs["k.sampler_name"].default == "euler"
    assert specs["prompt"] == InputSpec("STRING", "", multiline=True, max_length=20_000)
    assert specs["checkpoint"] == InputSpec("COMBO", "v1-5-pruned-emaonly.safetensors")


def test_booleans_new_style_combos_and_object_info_defaults():
    graph = {
        "1": node("GrowMask", "Grow [grow]", mask=["2", 1], expand=4, tapered_corners=False),
        "2": node("LoadImage", "Image [image]", image="in.png"),
        "3": node("SamplerEulerCFGpp", "Sampler [version]", version="regular"),
    }
    specs = {p.field: p.spec for p in collect_params(graph, OBJECT_INFO).inputs}
    assert specs["grow.expand"] == InputSpec("INT", 4, -16384, 16384, 1)
    assert specs["grow.tapered_corners"] == InputSpec("BOOLEAN", False)
    assert specs["version"] == InputSpec("COMBO", "regular", choices=("regular", "alternative"))


def test_a_bare_tag_skips_optional_widgets_the_graph_leaves_unset():
    graph = {"1": node("GrowMask", "Grow [grow]", mask=["2", 1], expand=4)}
    graph["2"] = node("LoadImage", "", image="in.png")
    assert [p.field for p in collect_params(graph, OBJECT_INFO).inputs] == ["grow"]
    graph["1"]["_meta"]["title"] = "[g:tapered_corners]"
    (param,) = collect_params(graph, OBJECT_INFO).inputs
    assert param.spec == InputSpec("BOOLEAN", True)  # object_info's default


def test_load_image_and_load_image_mask_are_file_inputs():
    graph = {
        "1": node("LoadImage", "Image [image]", image="example.png"),
        "2": node("LoadImageMask", "Mask [mask]", image="example.png", channel="alpha"),
    }
    specs = {p.field: p.spec for p in collect_params(graph, OBJECT_INFO).inputs}
    assert specs["image"] == InputSpec("IMAGE")
    assert specs["mask.image"] == InputSpec("MASK")
    assert specs["mask.image"].is_file
    assert specs["mask.channel"].choices == ("alpha", "red", "green", "blue")


def test_a_bare_tag_on_an_output_node_names_an_output():
    graph = sd15(n9="Save [my awesome image]")
    graph["10"] = node("PreviewImage", "Preview [preview]", images=["8", 0])
    graph["11"] = node("SaveLatent", "Latent [latent]", samples=["3", 0], filename_prefix="x")
    params = collect_params(graph, OBJECT_INFO)
    assert params.outputs == (
        Output("my awesome image", "9"),
        Output("preview", "10"),
        Output("latent", "11"),
    )
    assert params.inputs == ()


def test_a_widget_list_on_an_output_node_exposes_inputs():
    params = collect_params(sd15(n9="Save [images] [prefix:filename_prefix]"), OBJECT_INFO)
    assert params.outputs == (Output("images", "9"),)
    assert [p.field for p in params.inputs] == ["prefix"]


def test_an_input_and_an_output_may_share_a_name():
    params = collect_params(sd15(n9="Save [images]", n6="[images:text]"), OBJECT_INFO)
    assert (params.outputs[0].name, params.inputs[0].name) == ("images", "images")


def test_it_lists_bypassed_and_cached_nodes():
    graph = sd15(n4="Loader [!cache]", n7="Negative [!cache]")
    graph["20"] = node("ImageInvert", "Invert [!bypass]", image=["8", 0])
    graph["9"]["inputs"]["images"] = ["20", 0]
    params = collect_params(graph, OBJECT_INFO)
    assert params.cache == ("4", "7")
    assert params.bypass_ids == ("20",)
    assert params.bypass[0].routes == ("image",)


def test_duplicate_names_name_both_nodes():
    graph = sd15(n6="Positive [prompt]", n7="Negative [prompt]", n3="[seed:seed]", n5="[seed:width]")
    assert errors_of(graph) == [
        "input name 'seed' is used by node 3 and node 5",
        "input name 'prompt' is used by node 6 and node 7",
    ]


def test_duplicate_output_names_name_both_nodes():
    graph = sd15(n9="[out]")
    graph["10"] = node("PreviewImage", "Preview [out]", images=["8", 0])
    assert errors_of(graph) == ["output name 'out' is used by node 9 and node 10"]


def test_a_widget_exposed_twice_and_clashing_fields_are_errors():
    graph = sd15(n3="[a:seed] [b:seed]")
    assert errors_of(graph) == ["node 3: 'seed' is exposed by [a] and [b]"]
    graph = sd15(n3="[s.width:seed]", n5="[s:width,height]")
    assert errors_of(graph) == ["input 's.width' of node 5 collides with node 3"]


def test_every_problem_is_reported_at_once():
    graph = sd15(
        n3="KSampler [k:seed,sed,model]",
        n5="Latent [!nope]",
        n8="Decode [decode]",
        n6="[!bypass] [!cache]",
        n7="[!bypass] [neg]",
    )
    graph["3"]["inputs"]["steps"] = ["5", 0]
    del graph["3"]["inputs"]["model"]
    graph["3"]["_meta"]["title"] += " [s:steps]"
    graph["98"] = "junk"
    graph["99"] = node("NoSuchNode", "[x]")
    assert errors_of(graph) == [  # in node id order
        "node 3 (KSampler) [k]: the node has no input 'sed'",
        "node 3 (KSampler) [k]: input 'model' takes a MODEL link, not a value",
        "node 3 (KSampler) [s]: input 'steps' is linked to another node, not a widget",
        "node 5: unknown tag [!nope]: the ! tags are [!bypass] and [!cache]",
        "node 6: [!bypass] and [!cache] exclude each other",
        "node 7: a [!bypass] node cannot expose [neg]",
        "node 8 (VAEDecode) [decode]: the node has no widget inputs to expose",
        "node 98: not a {class_type, inputs} object",
        "node 99: unknown class 'NoSuchNode'",
    ]


def test_untagged_nodes_of_unknown_classes_are_not_its_business():
    graph = sd15(n6="[prompt]")
    graph["99"] = node("SomeCustomNode", "Custom")
    assert [p.field for p in collect_params(graph, OBJECT_INFO).inputs] == ["prompt"]


def test_a_bypass_with_no_input_for_a_used_output_is_an_import_error():
    graph = sd15(n5="Latent [!bypass]")
    assert errors_of(graph) == [
        "node 5 (EmptyLatentImage) is bypassed but has no LATENT input to stand in for its output 0 "
        "(LATENT), used by node 3.latent_image"
    ]
    graph["3"]["inputs"]["latent_image"] = ["99", 0]
    assert collect_params(graph, OBJECT_INFO).bypass_ids == ("5",)  # nobody uses its output


@pytest.mark.parametrize("builtin", BUILTINS, ids=lambda builtin: builtin.slug)
def test_the_builtin_graphs_parse(builtin):
    params = collect_params(builtin.graph, OBJECT_INFO)
    assert {p.field for p in params.inputs} == set(exposed_inputs(builtin.graph))
    assert all(p.flat for p in params.inputs)
    assert {name: (p.node_id, p.widget) for name, (p,) in params.groups.items()} == exposed_inputs(builtin.graph)
    assert [o.name for o in params.outputs] == ["images"]
    assert (params.bypass, params.cache) == ((), ())


def test_the_flux_seed_is_the_noise_seed():
    flux = next(builtin for builtin in BUILTINS if builtin.slug == "flux-txt2img")
    (seed,) = collect_params(flux.graph, OBJECT_INFO).groups["seed"]
    assert (seed.widget, seed.spec.maximum) == ("noise_seed", SEED_MAX)


def test_params_are_frozen():
    param = Param("seed", "3", "seed", InputSpec("INT"))
    with pytest.raises(AttributeError):
        param.name = "other"  # type: ignore[misc]
