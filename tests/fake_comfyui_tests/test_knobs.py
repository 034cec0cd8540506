"""Control knobs, faults, counters, /_fake control routes and `python -m tests.fake_comfyui`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.fake_comfyui import FakeComfyUI

from .scenario import prompt_body
from .traces import ws_trace
from .wsclient import Recorder, is_text

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _tiny(prefix: str = "knob") -> dict:
    return {
        "prompt": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1},
            },
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
        },
        "client_id": "knobs",
    }


async def test_require_token_guards_http_and_ws_but_not_control_routes(fake: FakeComfyUI) -> None:
    fake.configure(require_token="s3cret")
    assert httpx.get(f"{fake.url}/queue").status_code == 401
    assert httpx.get(f"{fake.url}/queue", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert httpx.get(f"{fake.url}/_fake/stats").status_code == 200
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{fake.ws_url}?clientId=x")
    socket = await websockets.connect(
        f"{fake.ws_url}?clientId=x", additional_headers={"Authorization": "Bearer s3cret"}
    )
    assert json.loads(await socket.recv())["type"] == "status"
    await socket.close()


def test_models_knob_feeds_combos_and_validation(fake: FakeComfyUI) -> None:
    body = prompt_body(ws_trace("m_ksampler_cold.submitter")[0])
    fake.configure(models={"checkpoints": ["only.safetensors"]})
    assert httpx.get(f"{fake.url}/models/checkpoints").json() == ["only.safetensors"]
    info = httpx.get(f"{fake.url}/object_info/CheckpointLoaderSimple").json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["only.safetensors"]
    rejected = httpx.post(f"{fake.url}/prompt", json=body)
    assert rejected.status_code == 400
    error = rejected.json()["node_errors"]["4"]["errors"][0]
    assert (error["type"], error["details"]) == (
        "value_not_in_list",
        "ckpt_name: 'tiny-sd15-random.ckpt' not in ['only.safetensors']",
    )
    fake.configure(models={"checkpoints": ["tiny-sd15-random.ckpt"]})
    assert httpx.post(f"{fake.url}/prompt", json=body).status_code == 200


def test_reject_fault_answers_the_chosen_error_and_consumes_a_number(fake: FakeComfyUI) -> None:
    fake.configure(fault={"kind": "reject", "type": "invalid_prompt", "count": 1})
    rejected = httpx.post(f"{fake.url}/prompt", json=_tiny())
    assert rejected.status_code == 400 and rejected.json()["error"]["type"] == "invalid_prompt"
    accepted = httpx.post(f"{fake.url}/prompt", json=_tiny())
    assert accepted.json()["number"] == 1
    assert fake.prompts_received == 1 and fake.stats.prompts_rejected == 1
    assert fake.last_prompt_body == _tiny() and fake.received_prompts == [_tiny()]


async def test_runtime_error_fault_reports_execution_error(fake: FakeComfyUI) -> None:
    fake.configure(fault={"kind": "runtime_error", "node": "2", "exception_message": "boom"})
    socket = await Recorder.connect(f"{fake.ws_url}?clientId=knobs")
    prompt_id = httpx.post(f"{fake.url}/prompt", json=_tiny()).json()["prompt_id"]
    frame = await socket.wait_for(lambda f: is_text(f, "execution_error"))
    data = json.loads(frame)["data"]
    expected = next(
        f["msg"]["data"]
        for f in ws_trace("c2_runtime_error_saveimage.submitter")[1]
        if f.get("msg", {}).get("type") == "execution_error"
    )
    assert list(data) == list(expected)
    assert (data["node_id"], data["exception_message"], data["executed"]) == ("2", "boom\n", ["1"])
    await socket.wait_for(lambda f: is_text(f, "executing", node=None))
    entry = httpx.get(f"{fake.url}/history/{prompt_id}").json()[prompt_id]
    assert entry["status"]["status_str"] == "error"
    await socket.close()


async def test_hang_fault_goes_silent_with_the_socket_open(fake: FakeComfyUI) -> None:
    fake.configure(fault={"kind": "hang", "node": "2"})
    socket = await Recorder.connect(f"{fake.ws_url}?clientId=knobs")
    httpx.post(f"{fake.url}/prompt", json=_tiny())
    await socket.wait_for(lambda f: is_text(f, "executing", node="2"))
    await socket.quiet(0.3)
    assert not any(is_text(f, "execution_success") for f in socket.frames)
    assert socket.closed_with is None
    assert httpx.get(f"{fake.url}/prompt").json() == {"exec_info": {"queue_remaining": 1}}
    await socket.close()


def test_slow_start_delays_answers(fake: FakeComfyUI) -> None:
    fake.configure(fault={"kind": "slow_start", "seconds": 0.8})
    started = time.monotonic()
    assert httpx.get(f"{fake.url}/system_stats").status_code == 200
    assert time.monotonic() - started >= 0.7
    started = time.monotonic()
    httpx.get(f"{fake.url}/system_stats")
    assert time.monotonic() - started < 0.5


def test_counters_and_control_routes(fake: FakeComfyUI) -> None:
    with httpx.Client(base_url=fake.url) as client:
        assert client.post("/_fake/configure", json={"step_time": 0.01, "previews": False}).json()["ok"]
        assert client.post("/_fake/configure", json={"no_such_knob": 1}).status_code == 400
        client.post("/prompt", json=_tiny())
        client.post("/interrupt", json={"prompt_id": "nope"})
        fake.wait_idle()
        stats = client.get("/_fake/stats").json()
    assert fake.knobs.step_time == 0.01 and fake.knobs.previews is False
    assert stats["prompts_received"] == 1 and stats["interrupts"] == [{"prompt_id": "nope", "effective": False}]
    assert stats["requests_per_path"]["/prompt"] == 1
    assert ("POST", "/interrupt") in fake.request_log
    assert stats["queue_remaining"] == 0 and stats["history_size"] == 1


def test_module_runs_in_the_foreground_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_comfyui", "--port", "0", "--step-time", "0.01"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert line.startswith("fake ComfyUI ready on http://127.0.0.1:")
        assert httpx.get(f"{url}/system_stats").json()["system"]["comfyui_version"] == "0.3.64"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_unvalidated_dangling_node_does_not_break_the_worker(fake: FakeComfyUI) -> None:
    body = _tiny()
    body["prompt"]["3"] = {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}}  # no output depends on it
    first = httpx.post(f"{fake.url}/prompt", json=body).json()["prompt_id"]
    second = httpx.post(f"{fake.url}/prompt", json=_tiny("after")).json()["prompt_id"]
    fake.wait_idle()
    for prompt_id in (first, second):
        entry = httpx.get(f"{fake.url}/history/{prompt_id}").json()[prompt_id]
        assert entry["status"]["status_str"] == "success"


def test_start_again_after_stop() -> None:
    fake = FakeComfyUI(port=0).start()
    fake.stop()
    with fake.start():
        assert httpx.post(f"{fake.url}/prompt", json=_tiny()).json()["number"] == 0
        fake.wait_idle()
        assert len(httpx.get(f"{fake.url}/history").json()) == 1
    assert fake.stats["prompts_received"] == 1 and fake.prompts_received == 1
