"""The OpenAI → workflow mapping as plain functions: no database, no server."""

from __future__ import annotations

import copy
import random

import pytest

from generations.openai import mapping
from generations.openai.mapping import ImageRequest, ParamError
from workflows_app.builtin import flux_txt2img, sd15_img2img, sd15_txt2img
from workflows_app.objectinfo import object_info
from workflows_app.params import Bypass, EndpointParams, collect_params


def untitled(graph: dict) -> dict:
    """The graph with every annotation removed: only the node-type rules can map it."""
    graph = copy.deepcopy(graph)
    for node in graph.values():
        node["_meta"] = {"title": node["class_type"]}
    return graph


def slots_of(graph: dict) -> dict[str, mapping.Slot]:
    return mapping.endpoint_slots(graph, collect_params(graph, object_info()), object_info())


def test_node_types_find_every_slot_of_an_unannotated_sd15_graph():
    assert mapping.graph_slots(untitled(sd15_txt2img.GRAPH)) == {
        "prompt": ("6", "text"), "negative_prompt": ("7", "text"),
        "width": ("5", "width"), "height": ("5", "height"), "batch_size": ("5", "batch_size"),
        "seed": ("3", "seed"), "steps": ("3", "steps"),
    }  # fmt: skip


def test_the_flux_prompt_is_found_through_guider_and_guidance():
    slots = mapping.graph_slots(untitled(flux_txt2img.GRAPH))

    assert slots["prompt"] == ("6", "text") and "negative_prompt" not in slots
    assert (slots["seed"], slots["steps"], slots["width"]) == (
        ("25", "noise_seed"),
        ("17", "steps"),
        ("27", "width"),
    )


def test_annotated_inputs_win_over_node_types():
    graph = copy.deepcopy(sd15_txt2img.GRAPH)
    graph["6"]["_meta"]["title"] = "Positive"  # the prompt is no longer annotated
    slots = slots_of(graph)

    assert (slots["prompt"].node_id, slots["prompt"].field) == ("6", "")
    assert (slots["width"].field, slots["seed"].field) == ("width", "seed")


def test_a_bypassed_node_is_no_slot():
    params = EndpointParams(bypass=(Bypass("7", "CLIPTextEncode", ("CONDITIONING",), (None,)),))

    assert "negative_prompt" not in mapping.endpoint_slots(untitled(sd15_txt2img.GRAPH), params, object_info())


@pytest.mark.parametrize(
    ("size", "rule"),
    [("big", "expected"), ("500x512", "multiple of 8"), ("8x512", "range 16–16384"), ("512x16392", "range"),
     ("512X512", "expected"), ("-8x8", "expected")],
)  # fmt: skip
def test_sizes_outside_the_rules_are_refused(size, rule):
    with pytest.raises(ParamError, match=rule) as caught:
        mapping.parse_size(size, slots_of(untitled(sd15_txt2img.GRAPH)))

    assert caught.value.param == "size"


def test_sizes_follow_the_latent_class_step_and_auto_keeps_the_default():
    sd3 = slots_of(untitled(flux_txt2img.GRAPH))  # EmptySD3LatentImage: multiples of 16

    assert mapping.parse_size("1024x768", sd3) == (1024, 768)
    assert mapping.parse_size("auto", sd3) is None
    with pytest.raises(ParamError, match="multiple of 16"):
        mapping.parse_size("1000x1000", sd3)


def test_a_model_without_a_size_takes_only_auto():
    with pytest.raises(ParamError, match="follows its input image"):
        mapping.parse_size("512x512", slots_of(sd15_img2img.GRAPH))


@pytest.mark.parametrize(
    ("quality", "steps"),
    [("low", 10), ("medium", None), ("auto", None), ("standard", None), ("high", 30), ("hd", 30)],
)
def test_quality_presets_scale_the_endpoint_steps(quality, steps):
    assert mapping.quality_steps(quality, 20) == steps


def plan(graph: dict, **request) -> list[mapping.JobPlan]:
    return mapping.plan(slots_of(graph), ImageRequest(**request), defaults={}, rng=random.Random(7))


def test_n_is_the_batch_size_when_the_endpoint_has_one():
    [job] = plan(sd15_txt2img.GRAPH, prompt="a cat", n=3, size="256x128", quality="low")

    assert job.inputs == {"prompt": "a cat", "batch_size": 3, "width": 256, "height": 128, "steps": 10}
    assert job.writes == {}


def test_without_a_batch_size_n_jobs_get_consecutive_seeds():
    jobs = plan(sd15_img2img.GRAPH, prompt="x", n=3, seed=100)

    assert [job.inputs["seed"] for job in jobs] == [100, 101, 102]


def test_unannotated_slots_become_graph_writes_with_a_fresh_seed_per_job():
    jobs = plan(untitled(sd15_txt2img.GRAPH), prompt="a dog", negative_prompt="fog", size="64x64", n=2)

    [job] = jobs  # still one batch
    assert job.inputs == {}
    assert job.writes[("6", "text")] == "a dog" and job.writes[("7", "text")] == "fog"
    assert (job.writes[("5", "batch_size")], job.writes[("5", "width")]) == (2, 64)
    assert isinstance(job.writes[("3", "seed")], int)
    prompt = mapping.write(untitled(sd15_txt2img.GRAPH), job.writes)
    assert prompt["6"]["inputs"]["text"] == "a dog" and prompt["5"]["inputs"]["batch_size"] == 2


@pytest.mark.parametrize(
    ("graph", "request_fields", "param"),
    [
        ({"1": {"class_type": "SaveImage", "inputs": {}}}, {}, "model"),
        (untitled(flux_txt2img.GRAPH), {"negative_prompt": "x"}, "negative_prompt"),
        (untitled(sd15_txt2img.GRAPH), {"steps": 0}, "steps"),
    ],
)
def test_what_an_endpoint_cannot_take_is_a_param_error(graph, request_fields, param):
    with pytest.raises(ParamError) as caught:
        plan(graph, prompt="x", **request_fields)

    assert caught.value.param == param
