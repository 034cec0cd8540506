"""GET/POST /history: entry structure per outcome, paging, delete and clear (http/get_history_*.json)."""

from __future__ import annotations

import json

import httpx

from tests.fake_comfyui import FakeComfyUI

from .scenario import prompt_body
from .traces import http_trace, shape, ws_trace


def _recorded_entry(name: str) -> dict:
    return next(iter(http_trace(name)["response"]["json"].values()))


def _run(client: httpx.Client, fake: FakeComfyUI, body: dict) -> str:
    response = client.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    fake.wait_idle()
    return response.json()["prompt_id"]


def _messages(entry: dict) -> list[tuple[str, list[str]]]:
    return [(event, list(data)) for event, data in entry["status"]["messages"]]


def _assert_entry_like(live: dict, recorded: dict) -> None:
    assert list(live) == list(recorded) == ["prompt", "outputs", "status", "meta"]
    assert list(live["status"]) == list(recorded["status"])
    assert live["status"]["status_str"] == recorded["status"]["status_str"]
    assert live["status"]["completed"] == recorded["status"]["completed"]
    assert _messages(live) == _messages(recorded)
    assert shape(live["outputs"]) == shape(recorded["outputs"])
    assert live["meta"] == recorded["meta"]
    assert live["prompt"][2:] == recorded["prompt"][2:]


def test_entries_match_each_recorded_outcome(fake: FakeComfyUI) -> None:
    cases = [
        ("a_success.submitter", "get_history_a_success.json"),
        ("c2_runtime_error_saveimage.submitter", "get_history_c2_runtime_error_saveimage.json"),
        ("f_no_client_id.socket1", "get_history_f_no_client_id.json"),
        ("g_binary_text_frame.submitter", "get_history_g_binary_text_frame.json"),
        ("l_partial_execution_targets.submitter", "get_history_partial_execution_targets.json"),
    ]
    with httpx.Client(base_url=fake.url) as client:
        for trace, history_file in cases:
            prompt_id = _run(client, fake, prompt_body(ws_trace(trace)[0]))
            live = client.get(f"/history/{prompt_id}").json()[prompt_id]
            _assert_entry_like(live, _recorded_entry(history_file))


def test_interrupted_entry(fake: FakeComfyUI) -> None:
    fake.configure(node_time=0.05)
    recorded = _recorded_entry("get_history_d_interrupted.json")
    with httpx.Client(base_url=fake.url) as client:
        prompt_id = client.post("/prompt", json={"prompt": recorded["prompt"][2]}).json()["prompt_id"]
        client.post("/interrupt")
        fake.wait_idle()
        live = client.get(f"/history/{prompt_id}").json()[prompt_id]
    assert live["status"]["status_str"] == "error" and live["status"]["completed"] is False
    assert [m[0] for m in live["status"]["messages"]][-1] == "execution_interrupted"
    assert _messages(live) == _messages(recorded)


def test_paging_follows_comfyui(fake: FakeComfyUI) -> None:
    with httpx.Client(base_url=fake.url) as client:
        ids = [_run(client, fake, {"prompt": _tiny_graph(color)}) for color in (1, 2, 3)]  # oldest first
        assert list(client.get("/history").json()) == ids
        assert client.get("/history", params={"max_items": 0}).json() == {}
        assert list(client.get("/history", params={"max_items": 1}).json()) == ids[2:]
        assert list(client.get("/api/history", params={"max_items": 1}).json()) == ids[2:]
        assert list(client.get("/history", params={"max_items": 2}).json()) == ids[1:]
        assert list(client.get("/history", params={"max_items": 2, "offset": 0}).json()) == ids[:2]
        assert list(client.get("/history", params={"offset": 1}).json()) == ids[1:]
        assert client.get("/history", params={"max_items": "abc"}).status_code == 500
        assert client.post("/history", json={"delete": [ids[0], "unknown"]}).content == b""
        assert list(client.get("/history").json()) == ids[1:]
        assert client.get(f"/history/{ids[0]}").json() == {}
        client.post("/history", json={"clear": True})
        assert client.get("/history").json() == {}


def test_pending_and_running_ids_answer_empty(fake: FakeComfyUI) -> None:
    fake.configure(node_time=0.2)
    with httpx.Client(base_url=fake.url) as client:
        first = client.post("/prompt", json={"prompt": _tiny_graph(7)}).json()["prompt_id"]
        second = client.post("/prompt", json={"prompt": _tiny_graph(8)}).json()["prompt_id"]
        assert client.get(f"/history/{first}").json() == {}
        assert client.get(f"/history/{second}").json() == {}
        client.post("/queue", json={"delete": [second]})
        fake.wait_idle()
        assert client.get(f"/history/{second}").json() == {}
        assert json.loads(client.get(f"/history/{first}").text)[first]["status"]["status_str"] == "success"


def _tiny_graph(color: int) -> dict:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "tiny"}},
    }
