"""Replay ws/j_queue_ops http_steps (= http/queue_ops_sequence.json): numbering, heap order, delete, clear."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.fake_comfyui import FakeComfyUI

from .scenario import Replay
from .traces import http_trace, shape
from .wsclient import is_text


def _map_ids(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_map_ids(item, ids) for item in value]
    if isinstance(value, dict):
        return {ids.get(k, k): _map_ids(v, ids) for k, v in value.items()}
    return value


def _queue_ids(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [item[1] for item in body["queue_running"]], [item[1] for item in body["queue_pending"]]


async def _replay_step(http: httpx.AsyncClient, step: dict[str, Any], ids: dict[str, str]) -> None:
    request, recorded = step["request"], step["response"]
    body = _map_ids(request.get("json"), ids)
    response = await http.request(request["method"], _map_ids(request["path"], ids), json=body)
    assert response.status_code == recorded["status"], step["step"]
    if request["path"] == "/prompt" and request["method"] == "POST":
        live = response.json()
        ids[recorded["json"]["prompt_id"]] = live["prompt_id"]
        assert shape(live) == shape(recorded["json"]), step["step"]
        assert (live["number"] < 0) == (recorded["json"]["number"] < 0)
    elif "queue" in request["path"] and request["method"] == "GET":
        live = response.json()
        assert _queue_ids(live) == _queue_ids(_map_ids(recorded["json"], ids)), step["step"]
        assert all(len(item) == 5 for item in live["queue_running"] + live["queue_pending"])
    elif recorded.get("json") is not None:
        assert response.json() == recorded["json"], step["step"]
    else:
        assert response.content == b"", step["step"]


async def test_queue_operations_replay(fake: FakeComfyUI) -> None:
    # Each node runs long enough for every queue mutation to happen while the first prompt runs, as in
    # the recording, even on a loaded machine (0.3 s was not always, under the full suite on 2 cores).
    fake.configure(node_time=1.0)
    steps = http_trace("queue_ops_sequence.json")
    ids: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=fake.url) as http:
        run = Replay(fake, http, "j_queue_ops")
        submitter = await run.connect("submitter")
        observer = await run.connect("observer")
        await _replay_step(http, steps[0], ids)
        await submitter.wait_for(lambda f: is_text(f, "executing", node="2"))
        for step in steps[1:]:
            if step["step"].startswith("GET /queue idle"):
                await asyncio.to_thread(fake.wait_idle)
            await _replay_step(http, step, ids)
        run.assert_matches(await run.finish())
        await submitter.close()
        await observer.close()
    assert fake.prompts_received == 6
