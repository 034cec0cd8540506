"""SIGKILL-like crash and restart (ws/n_server_killed_mid_job, ws/o_server_restarted, http/n_after_kill)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp
import httpx
import pytest
import websockets

from tests.fake_comfyui import FakeComfyUI

from .scenario import Replay, prompt_body, warm_up
from .traces import header_json, normalise_live, normalise_recorded, ws_trace
from .wsclient import Recorder, is_text


async def _aiohttp_observer(url: str, frames: list, ended: asyncio.Future) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        async for msg in ws:
            frames.append(msg.data)
        ended.set_result((msg.type if frames else None, ws.close_code))


async def test_crash_mid_sampling_drops_sockets_without_close_frame(fake: FakeComfyUI) -> None:
    header, recorded = ws_trace("n_server_killed_mid_job.submitter")
    _, observer_recorded = ws_trace("n_server_killed_mid_job.observer")
    observer_frames: list = []
    ended: asyncio.Future = asyncio.get_running_loop().create_future()
    async with httpx.AsyncClient(base_url=fake.url) as http:
        run = Replay(fake, http, "n_server_killed_mid_job")
        await warm_up("n_server_killed_mid_job.submitter", step_time=0.03, fault={"kind": "crash", "at_step": 5})(
            run
        )
        submitter = await run.connect("submitter")
        observer = asyncio.create_task(
            _aiohttp_observer(f"{fake.ws_url}?clientId=observerN", observer_frames, ended)
        )
        await asyncio.sleep(0.1)
        await run.post_prompt(prompt_body(header))
        await submitter.wait_for(lambda f: is_text(f, "executing", node="3"))
        await run.post_prompt(prompt_body(header, "post_prompt_b"))
        with pytest.raises(AssertionError, match="socket ended"):
            await submitter.wait_for(lambda f: False)
    assert isinstance(submitter.closed_with, websockets.ConnectionClosedError)
    assert submitter.closed_with.rcvd is None and submitter.ws.close_code == 1006
    assert normalise_live(submitter.frames) == normalise_recorded(recorded)
    _, close_code = await asyncio.wait_for(ended, 5)
    await observer
    assert close_code == 1006
    assert normalise_live(observer_frames) == normalise_recorded(observer_recorded)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake.url}/system_stats")


async def test_restart_comes_back_empty_on_the_same_port(fake: FakeComfyUI) -> None:
    fake.configure(step_time=0.05)
    header, _ = ws_trace("n_server_killed_mid_job.submitter")
    port = fake.port
    async with httpx.AsyncClient(base_url=fake.url) as http:
        first = (await http.post("/prompt", json=prompt_body(header))).json()
    await asyncio.to_thread(fake.crash)
    with pytest.raises(OSError):
        await websockets.connect(f"{fake.ws_url}?clientId=clientN", open_timeout=2)
    await asyncio.to_thread(fake.restart)
    assert fake.port == port
    socket = await Recorder.connect(f"{fake.ws_url}?clientId=clientN")
    await socket.quiet(0.3)
    _, recorded = ws_trace("o_server_restarted.submitter")
    assert [json.loads(f) for f in socket.frames] == [recorded[0]["msg"]]
    expected = header_json(ws_trace("o_server_restarted.submitter")[0], "http_after")
    async with httpx.AsyncClient(base_url=fake.url) as http:
        assert (await http.get(f"/history/{first['prompt_id']}")).json() == {}
        for call in expected[2:]:
            response = await http.get(call["request"]["path"])
            assert response.json() == call["response"]["json"], call["request"]["path"]
        again = (await http.post("/prompt", json=prompt_body(header))).json()
    assert again["number"] == 0
    await socket.close()


def test_crash_refuses_connections_until_restart() -> None:
    with FakeComfyUI().start() as fake:
        assert httpx.get(f"{fake.url}/system_stats").status_code == 200
        fake.crash()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{fake.url}/system_stats")
        fake.restart()
        assert httpx.get(f"{fake.url}/queue").json() == {"queue_running": [], "queue_pending": []}


def _wait_until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.ConnectError:
        return False
    return True


def test_control_route_crash_with_restart_after() -> None:
    with FakeComfyUI().start() as fake:
        assert httpx.post(f"{fake.url}/_fake/crash", json={"restart_after": 0.5}).status_code == 200
        _wait_until(lambda: not _answers(f"{fake.url}/queue"))
        _wait_until(lambda: _answers(f"{fake.url}/queue"))
        assert httpx.get(f"{fake.url}/_fake/stats").json()["restarts"] == 1


def test_python_crash_with_restart_after() -> None:
    with FakeComfyUI().start() as fake:
        fake.crash(restart_after=0.3)
        assert not _answers(f"{fake.url}/queue")
        _wait_until(lambda: _answers(f"{fake.url}/queue"))
        assert fake.stats["crashes"] == 1 and fake.stats["restarts"] == 1
