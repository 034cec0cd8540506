"""The built-in endpoints: well-formed graphs, a stable input naming, and the data migration."""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path

import pytest
from django.apps import apps as django_apps

from workflows_app.builtin import BUILTINS, BuiltinEndpoint, exposed_inputs
from workflows_app.checks import check_graph_against_object_info, find_cycle
from workflows_app.models import Endpoint, Workflow, WorkflowVersion

OBJECT_INFO = json.loads((Path(__file__).parents[1] / "data" / "object_info.json").read_text())

# Model files and uploaded images depend on the fleet, not on the recorded object_info.
FLEET_FILES = frozenset({"ckpt_name", "unet_name", "clip_name1", "clip_name2", "vae_name", "image"})

SD_INPUTS = {"checkpoint", "prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "scheduler"}
EXPOSED = {
    "sd15-txt2img": SD_INPUTS | {"width", "height", "batch_size"},
    "sdxl-txt2img": SD_INPUTS | {"width", "height", "batch_size"},
    "flux-txt2img": {"unet", "weight_dtype", "clip_l", "t5xxl", "vae", "prompt", "guidance"}
    | {"seed", "steps", "sampler", "scheduler", "width", "height", "batch_size"},
    "sd15-img2img": SD_INPUTS | {"image", "denoise"},
    "sd15-inpaint": SD_INPUTS | {"image", "mask", "mask_channel", "grow_mask_by"},
}

by_slug = pytest.mark.parametrize("builtin", BUILTINS, ids=lambda builtin: builtin.slug)
migration = importlib.import_module("workflows_app.migrations.0002_builtin_endpoints")


def builtin_named(slug: str) -> BuiltinEndpoint:
    return next(builtin for builtin in BUILTINS if builtin.slug == slug)


def check(graph: dict) -> list[str]:
    return check_graph_against_object_info(graph, OBJECT_INFO, skip_choices=FLEET_FILES)


def test_the_five_builtins_have_unique_slugs():
    assert [builtin.slug for builtin in BUILTINS] == list(EXPOSED)


@by_slug
def test_graph_matches_object_info(builtin: BuiltinEndpoint):
    assert check(builtin.graph) == []


@by_slug
def test_graph_is_json_and_acyclic(builtin: BuiltinEndpoint):
    assert json.loads(json.dumps(builtin.graph)) == builtin.graph
    assert find_cycle(builtin.graph) == []


@by_slug
def test_graph_has_one_annotated_save_image(builtin: BuiltinEndpoint):
    saves = [node for node in builtin.graph.values() if node["class_type"] == "SaveImage"]
    assert len(saves) == 1
    assert re.search(r"\[images\]", saves[0]["_meta"]["title"])


@by_slug
def test_every_node_has_a_title(builtin: BuiltinEndpoint):
    assert all(node["_meta"]["title"] for node in builtin.graph.values())


@by_slug
def test_it_exposes_the_agreed_input_names(builtin: BuiltinEndpoint):
    assert set(exposed_inputs(builtin.graph)) == EXPOSED[builtin.slug]


@by_slug
def test_every_exposed_name_is_used_once_and_points_at_a_widget(builtin: BuiltinEndpoint):
    titles = " ".join(node["_meta"]["title"] for node in builtin.graph.values())
    assert len(re.findall(r"\[\w+:\w+\]", titles)) == len(exposed_inputs(builtin.graph))
    for node_id, widget in exposed_inputs(builtin.graph).values():
        value = builtin.graph[node_id]["inputs"][widget]
        assert not isinstance(value, list), f"{widget} of node {node_id} is a link, not a widget"


@by_slug
def test_defaults_are_the_graph_values_of_what_callers_may_omit(builtin: BuiltinEndpoint):
    assert not {"prompt", "image", "mask"} & set(builtin.defaults)
    assert set(builtin.defaults) | {"prompt", "image", "mask"} >= EXPOSED[builtin.slug]


@pytest.mark.parametrize(
    ("slug", "expected"),
    [
        ("sd15-txt2img", {"width": 512, "height": 512, "steps": 20, "cfg": 7.0, "sampler": "euler"}),
        ("sd15-txt2img", {"scheduler": "normal", "checkpoint": "v1-5-pruned-emaonly.safetensors"}),
        ("sdxl-txt2img", {"width": 1024, "height": 1024, "steps": 25, "cfg": 7.0, "sampler": "dpmpp_2m"}),
        ("sdxl-txt2img", {"scheduler": "karras", "checkpoint": "sd_xl_base_1.0.safetensors"}),
        ("flux-txt2img", {"width": 1024, "height": 1024, "steps": 20, "guidance": 3.5, "sampler": "euler"}),
        ("flux-txt2img", {"scheduler": "simple", "unet": "flux1-dev.safetensors", "vae": "ae.safetensors"}),
        ("flux-txt2img", {"clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}),
        ("sd15-img2img", {"denoise": 0.75, "steps": 20, "cfg": 7.0}),
        ("sd15-inpaint", {"grow_mask_by": 6, "mask_channel": "alpha"}),
    ],
)
def test_per_model_defaults(slug: str, expected: dict):
    assert expected.items() <= builtin_named(slug).defaults.items()


def test_flux_uses_the_flux_text_encoders():
    graph = builtin_named("flux-txt2img").graph
    assert graph["11"]["class_type"] == "DualCLIPLoader"
    assert graph["11"]["inputs"]["type"] == "flux"


def test_inpainting_samples_at_full_denoise():
    graph = builtin_named("sd15-inpaint").graph
    assert graph["3"]["inputs"]["denoise"] == 1.0
    assert graph["3"]["inputs"]["latent_image"] == ["12", 0]
    assert graph["12"]["class_type"] == "VAEEncodeForInpaint"


def test_the_check_only_skips_model_file_choices():
    graph = copy.deepcopy(builtin_named("sd15-txt2img").graph)
    graph["4"]["inputs"]["ckpt_name"] = "anything.safetensors"
    graph["3"]["inputs"]["sampler_name"] = "not_a_sampler"
    assert check(graph) == [
        "node 3 (KSampler).sampler_name: 'not_a_sampler' is not one of "
        + str(OBJECT_INFO["KSampler"]["input"]["required"]["sampler_name"][0])
    ]


def test_the_check_reports_unknown_and_missing_pieces():
    graph = copy.deepcopy(builtin_named("sd15-txt2img").graph)
    graph["1"] = {"class_type": "NoSuchNode", "inputs": {}}
    graph["5"]["inputs"]["depth"] = 3
    del graph["5"]["inputs"]["batch_size"]
    assert check(graph) == [
        "node 5 (EmptyLatentImage): missing required input 'batch_size'",
        "node 5 (EmptyLatentImage): unknown input 'depth'",
        "node 1: unknown class 'NoSuchNode'",
    ]


def test_the_check_reports_bad_links():
    graph = copy.deepcopy(builtin_named("sd15-txt2img").graph)
    graph["3"]["inputs"]["model"] = ["4", 1]
    graph["3"]["inputs"]["positive"] = ["99", 0]
    graph["3"]["inputs"]["negative"] = ["7", 3]
    graph["8"]["inputs"]["vae"] = ["4"]
    assert check(graph) == [
        "node 3 (KSampler).model: gets CLIP from node 4 slot 1 but takes MODEL",
        "node 3 (KSampler).positive: links to missing node '99'",
        "node 3 (KSampler).negative: links to slot 3 of node 7, which has 1 outputs",
        "node 8 (VAEDecode).vae: bad link ['4'], want [node_id, slot]",
    ]


def test_the_check_reports_out_of_range_and_mistyped_values():
    graph = copy.deepcopy(builtin_named("sd15-txt2img").graph)
    graph["5"]["inputs"].update(width=8, height=99999, batch_size=1.5)
    graph["3"]["inputs"].update(cfg="7", denoise=True)
    graph["8"]["inputs"]["vae"] = "a vae"
    assert check(graph) == [
        "node 5 (EmptyLatentImage).width: 8 is below the minimum 16",
        "node 5 (EmptyLatentImage).height: 99999 is above the maximum 16384",
        "node 5 (EmptyLatentImage).batch_size: 1.5 is not of type INT",
        "node 3 (KSampler).cfg: '7' is not of type FLOAT",
        "node 3 (KSampler).denoise: True is not of type FLOAT",
        "node 8 (VAEDecode).vae: takes a link to a VAE, got the value 'a vae'",
    ]


def test_the_check_finds_cycles():
    graph = copy.deepcopy(builtin_named("sd15-img2img").graph)
    graph["10"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    assert find_cycle(graph)
    assert check(graph)[-1].startswith("the links form a cycle through nodes")


@pytest.mark.django_db
def test_the_migration_published_the_five_builtins():
    endpoints = Endpoint.objects.filter(builtin=True).select_related("version__workflow")
    assert sorted(e.slug for e in endpoints) == sorted(EXPOSED)
    for endpoint in endpoints:
        builtin = builtin_named(endpoint.slug)
        assert endpoint.enabled
        assert (endpoint.title, endpoint.description) == (builtin.title, builtin.description)
        assert endpoint.defaults == builtin.defaults
        assert endpoint.version.number == 1
        assert endpoint.version.source_format == WorkflowVersion.SourceFormat.API
        assert endpoint.version.graph == builtin.graph
        assert endpoint.version.workflow.name == builtin.slug


@pytest.mark.django_db
def test_the_migration_can_run_twice():
    migration.create_builtins(django_apps, None)
    assert Endpoint.objects.filter(builtin=True).count() == 5
    assert WorkflowVersion.objects.count() == 5


@pytest.mark.django_db
def test_reversing_removes_the_builtins_but_keeps_an_operators_endpoint():
    sd15 = WorkflowVersion.objects.get(workflow__name="sd15-txt2img")
    Endpoint.objects.create(slug="my-sd15", version=sd15)
    migration.delete_builtins(django_apps, None)
    assert not Endpoint.objects.filter(builtin=True).exists()
    assert list(Workflow.objects.values_list("name", flat=True)) == ["sd15-txt2img"]
    migration.create_builtins(django_apps, None)
    assert Endpoint.objects.filter(builtin=True).count() == 5
