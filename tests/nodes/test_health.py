"""Health checks against the fake ComfyUI on real ports: status, failures, inventory refresh, timing."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from nodes.comfy import SystemStats
from nodes.health import CHECK_TIMEOUT, MODEL_FOLDERS, Refresh, refresh_due
from nodes.models import Node
from nodes.services import node_check, node_drain, node_record_failure, node_resume
from nodes.tasks import check_nodes
from tests.fake_comfyui import DEFAULT_MODELS
from tests.nodes.graphs import txt2img

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung node."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def fresh(node: Node) -> Node:
    return Node.objects.get(id=node.id)


def post_prompt(fake, *, steps: int = 4) -> str:
    response = httpx.post(f"{fake.url}/prompt", json={"prompt": txt2img(steps=steps), "client_id": "t"})
    response.raise_for_status()
    return response.json()["prompt_id"]


def wait_running(fake, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not httpx.get(f"{fake.url}/queue").json()["queue_running"]:
        assert time.monotonic() < deadline, "the fake never started the prompt"
        time.sleep(0.02)


def test_a_registered_node_is_idle_with_versions_devices_and_models(node):
    health = node.health
    assert node.status == Node.Status.IDLE
    assert health["comfyui_version"] == "0.3.64"
    assert health["python_version"].startswith("3.11")
    assert health["pytorch_version"].startswith("2.")
    assert health["gpu"] == "cpu" and health["vram_total"] > 0 and health["vram_free"] > 0
    assert health["ram_total"] > 0 and health["queue_remaining"] == 0
    assert set(health["models"]) == set(MODEL_FOLDERS) & set(DEFAULT_MODELS)
    assert health["models"]["checkpoints"] == sorted(DEFAULT_MODELS["checkpoints"])
    assert health["models"]["loras"] == DEFAULT_MODELS["loras"]
    assert len(health["object_info_hash"]) == 64 and health["object_info_classes"] > 400
    assert node.last_seen_at and node.last_checked_at and node.consecutive_failures == 0


def test_a_node_running_a_prompt_is_busy_then_idle_again(node, fake_comfy):
    fake_comfy.configure(step_time=0.3)
    post_prompt(fake_comfy, steps=4)
    wait_running(fake_comfy)
    check_nodes()
    busy = fresh(node)
    assert busy.status == Node.Status.BUSY
    assert busy.health["queue_running"] == 1 and busy.health["queue_remaining"] == 1
    fake_comfy.wait_idle(timeout=10)
    check_nodes()
    assert fresh(node).status == Node.Status.IDLE


def test_a_node_holding_router_jobs_is_busy_even_with_an_empty_queue(node):
    Node.objects.filter(id=node.id).update(running=1)
    assert node_check(node=fresh(node)).status == Node.Status.BUSY


def test_a_node_goes_offline_after_n_failures_and_back_on_the_first_success(node, fake_comfy, settings):
    settings.COMFYROUTER_OFFLINE_AFTER = 3
    fake_comfy.crash()
    for failures in (1, 2):
        check_nodes()
        failing = fresh(node)
        assert failing.status == Node.Status.IDLE and failing.consecutive_failures == failures
    assert failing.last_error == f"could not connect to {fake_comfy.url}: connection refused"
    check_nodes()
    offline = fresh(node)
    assert offline.status == Node.Status.OFFLINE and offline.consecutive_failures == 3
    assert offline.last_seen_at == node.last_seen_at and offline.last_checked_at > node.last_checked_at
    assert offline.health["comfyui_version"] == "0.3.64"  # the last known health is kept
    fake_comfy.restart()
    check_nodes()
    back = fresh(node)
    assert back.status == Node.Status.IDLE
    assert back.consecutive_failures == 0 and back.last_error == "" and back.last_seen_at > node.last_seen_at


def test_a_draining_node_stays_draining_while_its_health_is_recorded(node, fake_comfy, settings):
    settings.COMFYROUTER_OFFLINE_AFTER = 1
    node_drain(node=node)
    fake_comfy.configure(step_time=0.3)
    post_prompt(fake_comfy)
    wait_running(fake_comfy)
    check_nodes()
    draining = fresh(node)
    assert draining.status == Node.Status.DRAINING and draining.health["queue_running"] == 1
    fake_comfy.crash()
    check_nodes()
    assert fresh(node).status == Node.Status.DRAINING and fresh(node).consecutive_failures == 1
    assert node not in Node.objects.dispatchable()


def test_resume_puts_a_drained_node_back_as_idle_or_offline(node, settings):
    settings.COMFYROUTER_OFFLINE_AFTER = 2
    node_drain(node=node)
    assert node_resume(node=fresh(node)).status == Node.Status.IDLE
    node_drain(node=node)
    for _ in range(2):
        node_record_failure(node=fresh(node), error="could not connect")
    assert fresh(node).status == Node.Status.DRAINING
    assert node_resume(node=fresh(node)).status == Node.Status.OFFLINE


def test_regular_checks_do_not_refetch_models_or_object_info(node, fake_comfy):
    calls = fake_comfy.requests_per_path
    fake_comfy.configure(models={"checkpoints": ["new.safetensors"]})
    for _ in range(3):
        check_nodes()
    after = fake_comfy.requests_per_path
    assert after["/system_stats"] == calls["/system_stats"] + 3 and after["/queue"] == calls["/queue"] + 3
    assert after.get("/object_info") == calls.get("/object_info") == 1
    assert after["/models/checkpoints"] == calls["/models/checkpoints"] == 1
    assert fresh(node).health["models"]["checkpoints"] == sorted(DEFAULT_MODELS["checkpoints"])


def test_models_are_refetched_when_stale_and_after_the_node_comes_back(node, fake_comfy):
    fake_comfy.configure(models={**DEFAULT_MODELS, "checkpoints": ["new.safetensors"]})
    stale = (timezone.now() - timedelta(minutes=2)).isoformat()
    Node.objects.filter(id=node.id).update(health={**node.health, "models_checked_at": stale})
    check_nodes()
    health = fresh(node).health
    assert health["models"]["checkpoints"] == ["new.safetensors"]
    assert fake_comfy.requests_per_path["/object_info"] == 1  # not stale yet
    fake_comfy.crash()
    check_nodes()
    fake_comfy.restart()
    check_nodes()
    assert fake_comfy.requests_per_path["/object_info"] == 2
    assert fresh(node).health["object_info_checked_at"] > health["object_info_checked_at"]


def test_check_now_refetches_the_inventory(node, fake_comfy):
    fake_comfy.configure(models={"checkpoints": ["only.safetensors"], "loras": []})
    health = node_check(node=node, full=True).health
    assert health["models"]["checkpoints"] == ["only.safetensors"] and health["models"]["loras"] == []
    assert health["models"]["vae"] == []


def test_the_inventory_is_due_for_a_new_restarted_or_stale_node():
    stats = SystemStats("0.3.64", "3.11.7", "2.5.0", 1, 1, ())
    now = timezone.now()
    recent = {
        "comfyui_version": "0.3.64",
        "python_version": "3.11.7",
        "pytorch_version": "2.5.0",
        "models_checked_at": (now - timedelta(seconds=10)).isoformat(),
        "object_info_checked_at": (now - timedelta(seconds=90)).isoformat(),
    }
    assert refresh_due(None, stats=stats, now=now) == Refresh(True, True)
    assert refresh_due(recent, stats=stats, now=now) == Refresh(False, False)
    assert refresh_due(recent, stats=stats, now=now + timedelta(seconds=60)) == Refresh(True, False)
    assert refresh_due(recent, stats=stats, now=now + timedelta(minutes=10)) == Refresh(True, True)
    assert refresh_due({**recent, "comfyui_version": "0.3.63"}, stats=stats, now=now) == Refresh(True, True)


def test_a_hanging_node_does_not_delay_the_checks_of_the_others(node, fake_comfy, silent_port):
    hung = [
        Node.objects.create(name=f"hung-{i}", base_url=f"http://127.0.0.1:{silent_port}", status="idle")
        for i in range(4)
    ]
    fake_comfy.configure(models={"checkpoints": ["after.safetensors"]})
    Node.objects.filter(id=node.id).update(health={})
    started = time.monotonic()
    assert check_nodes() == 5
    elapsed = time.monotonic() - started
    assert elapsed < 2 * CHECK_TIMEOUT, f"checks ran one after the other ({elapsed:.1f} s)"
    assert fresh(node).status == Node.Status.IDLE
    assert fresh(node).health["models"]["checkpoints"] == ["after.safetensors"]
    for other in hung:
        assert fresh(other).last_error == f"http://127.0.0.1:{silent_port} did not answer within 3 s"


def test_disabled_nodes_are_not_checked(node, fake_comfy):
    Node.objects.filter(id=node.id).update(enabled=False)
    before = fake_comfy.requests_per_path["/system_stats"]
    assert check_nodes() == 0
    assert fake_comfy.requests_per_path["/system_stats"] == before


def test_beat_checks_the_nodes_every_interval(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["check-nodes"]
    assert entry["task"] == "nodes.tasks.check_nodes"
    assert entry["schedule"] == settings.COMFYROUTER_HEALTH_INTERVAL == 5
    assert settings.COMFYROUTER_OFFLINE_AFTER == 3
