"""The scheduler over plain data: no database, no network."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from generations.models import Job
from nodes.dispatch import (
    JobView,
    NodeView,
    fairness_key,
    missing_models,
    plan,
    primary_checkpoint,
    rank_nodes,
    required_models,
)
from nodes.models import Node

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SDXL = "sdxl_base.safetensors"
SD15 = "sd15.safetensors"


def graph(ckpt: str = SDXL, **inputs: str) -> dict:
    """A txt2img graph; extra inputs become one more loader node each."""
    nodes: dict = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    for n, (name, value) in enumerate(inputs.items(), start=10):
        nodes[str(n)] = {"class_type": "Loader", "inputs": {name: value, "model": ["4", 0]}}
    return nodes


def job(n: int, *, client: str = "a", priority: int = 0, models: dict | None = None, ckpt: str = "") -> JobView:
    pairs = frozenset((f, name) for f, names in (models or {}).items() for name in names)
    return JobView(n, T0 + timedelta(seconds=n), priority, client, pairs, ckpt)


def node(n: int, **kw) -> NodeView:
    return NodeView(id=n, name=kw.pop("name", f"n{n:02}"), **kw)


def test_required_models_reads_each_loader_into_its_comfyui_folder():
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sub\\base.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors", "model": ["1", 0]}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "5": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
        "6": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": "t5xxl.safetensors", "clip_name2": "l.st"},
        },
        "7": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit-h.safetensors"}},
        "8": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.safetensors"}},
        "9": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-ultra.pth"}},
        "10": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["9", 0]}},
        "11": {"class_type": "KlingImageGenerationNode", "inputs": {"model_name": "kling-v1"}},
        "12": {"class_type": "Note"},
    }
    assert required_models(g) == {
        "checkpoints": {"sub/base.safetensors"},
        "loras": {"detail.safetensors"},
        "vae": {"sdxl_vae.safetensors"},
        "diffusion_models": {"flux1-dev.safetensors"},
        "text_encoders": {"t5xxl.safetensors", "l.st"},
        "clip_vision": {"vit-h.safetensors"},
        "controlnet": {"canny.safetensors"},
        "upscale_models": {"4x-ultra.pth"},
    }
    assert required_models({}) == {} and required_models("not a graph") == {}


def test_primary_checkpoint_is_the_checkpoint_else_the_diffusion_model():
    assert primary_checkpoint(graph(SD15)) == SD15
    assert (
        primary_checkpoint({"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux.sft"}}}) == "flux.sft"
    )


def test_views_are_built_from_unsaved_rows():
    health = {"models": {"unet": ["a\\flux.sft"], "diffusion_models": ["b.sft"], "loras": []}}
    view = NodeView.from_node(Node(id=7, name="gpu", health=health, running=1, status=Node.Status.BUSY))
    assert view.models == {"diffusion_models": {"a/flux.sft", "b.sft"}, "loras": frozenset()}
    assert view.free_slots == 1 and view.accepts_jobs
    assert NodeView.from_node(Node(id=8, name="new")).models is None

    j = JobView.from_job(Job(prompt=graph(SD15, lora_name="x.st"), owner_id=3, api_key_id=5, priority=2))
    assert j.client == "key:5" and j.priority == 2 and j.checkpoint == SD15
    assert j.models == {("checkpoints", SD15), ("loras", "x.st")}


def test_fairness_key_is_the_api_key_then_the_owner_then_anonymous():
    assert fairness_key(api_key_id=5, owner_id=3) == "key:5"
    assert fairness_key(api_key_id=None, owner_id=3) == "user:3"
    assert fairness_key(api_key_id=None, owner_id=None) == "anonymous"


def test_higher_priority_runs_first_even_when_newer():
    jobs = [job(1), job(2), job(3, priority=5)]
    assert plan(jobs, [node(1, capacity=1)]) == [(3, 1)]


def test_one_client_is_served_first_in_first_out():
    assert [j for j, _ in plan([job(3), job(1), job(2)], [node(1, capacity=2)])] == [1, 2]


def test_a_single_job_does_not_wait_behind_another_clients_backlog():
    jobs = [job(n, client="a") for n in range(500)] + [job(500, client="b")]
    assert [j for j, _ in plan(jobs, [node(1)])] == [0, 500]
    # One slot free and "a" already holds two: "b" goes first.
    assert plan(jobs, [node(1, capacity=1)], in_flight={"a": 2}) == [(500, 1)]


def test_clients_take_turns_at_equal_priority():
    jobs = [job(n, client="a") for n in range(4)] + [job(10 + n, client="b") for n in range(2)]
    assert [j for j, _ in plan(jobs, [node(1, capacity=6)])] == [0, 10, 1, 11, 2, 3]


def test_a_node_with_capacity_two_running_one_takes_one_more():
    assert plan([job(1), job(2)], [node(1, capacity=2, running=1)]) == [(1, 1)]
    assert plan([job(1)], [node(1, capacity=2, running=2)]) == []


def test_one_plan_fills_every_free_slot():
    pairs = plan([job(n) for n in range(10)], [node(1), node(2, running=1), node(3, capacity=3)])
    assert sorted(n for _, n in pairs) == [1, 1, 2, 3, 3, 3]


@pytest.mark.parametrize(
    "kw", [{"status": Node.Status.DRAINING}, {"status": Node.Status.OFFLINE}, {"enabled": False}]
)
def test_draining_offline_and_disabled_nodes_take_nothing(kw):
    assert plan([job(1)], [node(1, **kw)]) == []
    assert rank_nodes([node(1, **kw), node(2)], job=job(1)) == [node(2)]


def test_jobs_go_only_to_nodes_with_every_model():
    need = {"checkpoints": [SDXL], "loras": ["x.st"]}
    no_lora = node(1, models={"checkpoints": frozenset({SDXL}), "loras": frozenset()})
    full = node(2, models={"checkpoints": frozenset({SDXL}), "loras": frozenset({"x.st"})})
    unknown = node(3)
    no_lora_folder = node(4, models={"checkpoints": frozenset({SDXL})})
    ranked = rank_nodes([no_lora, full, unknown, no_lora_folder], job=job(1, models=need))
    assert [n.id for n in ranked] == [2, 3, 4]


def test_missing_models_names_what_no_node_has():
    a = node(1, models={"checkpoints": frozenset({SDXL}), "loras": frozenset({"x.st"})})
    b = node(2, models={"checkpoints": frozenset({SD15}), "loras": frozenset({"y.st"})})
    assert missing_models(graph(SDXL, lora_name="x.st"), [a, b]) is None
    assert missing_models(graph(SDXL, lora_name="z.st"), [a, b]) == {"loras": {"z.st"}}
    assert missing_models(graph("flux.sft", lora_name="z.st"), [a, b]) == {
        "checkpoints": {"flux.sft"},
        "loras": {"z.st"},
    }
    # Each file is on some node but none has both: what the closest node lacks.
    assert missing_models(graph(SD15, lora_name="x.st"), [a, b, node(3, models={"loras": frozenset()})]) == {
        "checkpoints": {SD15}
    }
    assert missing_models(graph(SDXL), []) == {"checkpoints": {SDXL}}
    assert missing_models(graph(SDXL), [a, node(3)]) is None
    assert missing_models({}, []) is None


def test_the_node_with_the_checkpoint_loaded_wins_over_a_less_loaded_one():
    warm = node(1, running=1, loaded_checkpoint=SDXL)
    cold = node(2, running=0, loaded_checkpoint=SD15)
    assert rank_nodes([cold, warm], job=job(1, ckpt=SDXL)) == [warm, cold]
    assert rank_nodes([cold, warm], job=job(1)) == [cold, warm]


def test_the_less_loaded_node_wins_over_a_faster_one():
    fast_busy = node(1, capacity=4, running=2, avg_job_seconds=1.0)
    slow_free = node(2, capacity=4, running=1, avg_job_seconds=9.0)
    big = node(3, capacity=8, running=2, avg_job_seconds=9.0)
    assert [n.id for n in rank_nodes([fast_busy, slow_free, big], job=job(1))] == [2, 3, 1]


def test_speed_then_name_break_ties_and_unknown_speed_goes_last():
    nodes = [
        node(1, name="c"),
        node(2, name="b", avg_job_seconds=3.0),
        node(3, name="a"),
        node(4, avg_job_seconds=2.0),
    ]
    assert [n.id for n in rank_nodes(nodes, job=job(1))] == [4, 2, 3, 1]


def test_a_job_no_free_node_can_run_does_not_block_later_jobs():
    lora_node = node(1, capacity=1, running=1, models={"loras": frozenset({"x.st"})})
    plain_node = node(2, capacity=1, models={"loras": frozenset()})
    jobs = [job(1, models={"loras": ["x.st"]}), job(2, models={"loras": ["x.st"]}), job(3)]
    assert plan(jobs, [lora_node, plain_node]) == [(3, 2)]


def test_the_plan_does_not_depend_on_input_order():
    jobs = [job(n, client=f"c{n % 7}", priority=n % 3) for n in range(200)]
    nodes = [node(n, running=n % 2, avg_job_seconds=n % 4 or None) for n in range(8)]
    first = plan(jobs, nodes)
    for seed in range(5):
        rng = random.Random(seed)
        assert plan(rng.sample(jobs, len(jobs)), rng.sample(nodes, len(nodes))) == first


def fleet_and_backlog() -> tuple[list[JobView], list[NodeView]]:
    """16 nodes with different checkpoints and LoRAs; 10k jobs from 50 clients, some for LoRAs nobody has."""
    rng = random.Random(4)
    ckpts = [f"ckpt{n}.safetensors" for n in range(4)]
    nodes = []
    for n in range(16):
        models = {"checkpoints": frozenset(ckpts[: 2 + n % 3]), "loras": frozenset({f"l{n % 5}"})}
        speed = rng.uniform(2, 9)
        loaded = ckpts[n % 4]
        nodes.append(node(n, running=n % 2, loaded_checkpoint=loaded, avg_job_seconds=speed, models=models))
    jobs = []
    for n in range(10_000):
        ckpt = rng.choice(ckpts)
        models = {"checkpoints": [ckpt], "loras": [f"l{rng.randrange(8)}"]}
        client, priority = f"c{rng.randrange(50)}", rng.choice([0, 0, 0, 1])
        jobs.append(job(n, client=client, priority=priority, ckpt=ckpt, models=models))
    return jobs, nodes


def test_a_plan_over_ten_thousand_jobs_and_sixteen_nodes_is_fast():
    jobs, nodes = fleet_and_backlog()
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        pairs = plan(jobs, nodes)
        timings.append(time.perf_counter() - start)
    print(f"plan(10k jobs, 16 nodes): best {min(timings) * 1000:.1f} ms, {len(pairs)} pairs")
    assert len(pairs) == sum(n.free_slots for n in nodes)
    assert min(timings) < 1.0
