"""Replay one recorded WS scenario against a fake and return what each socket received."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fake_comfyui import FakeComfyUI

from .traces import header_json, normalise_live, normalise_recorded, ws_trace
from .wsclient import Recorder, is_text

Trigger = Callable[["Replay"], Awaitable[None]]


@dataclass
class Replay:
    """A scenario run: the fake, an HTTP client, one Recorder per recorded socket role."""

    fake: FakeComfyUI
    http: httpx.AsyncClient
    name: str
    client_ids: dict[str, str] = field(default_factory=dict)
    sockets: dict[str, Recorder] = field(default_factory=dict)
    prompt_ids: list[str] = field(default_factory=list)

    def header(self, role: str) -> dict[str, Any]:
        return ws_trace(f"{self.name}.{role}")[0]

    async def connect(self, role: str, client_id: str | None = None) -> Recorder:
        client_id = client_id or self.client_ids.get(role) or self.header(role)["this_socket_clientId"]
        recorder = await Recorder.connect(f"{self.fake.ws_url}?clientId={client_id}")
        await recorder.wait_for(lambda f: is_text(f, "status"))
        self.sockets[role] = recorder
        return recorder

    async def post_prompt(self, body: dict[str, Any]) -> str:
        response = await self.http.post("/prompt", json=body)
        assert response.status_code == 200, response.text
        self.prompt_ids.append(response.json()["prompt_id"])
        return self.prompt_ids[-1]

    async def finish(self) -> dict[str, list[Any]]:
        await asyncio.to_thread(self.fake.wait_idle)
        for recorder in self.sockets.values():
            await recorder.quiet()
        return {role: recorder.frames for role, recorder in self.sockets.items()}

    def assert_matches(self, received: dict[str, list[Any]]) -> None:
        for role, frames in received.items():
            _, recorded = ws_trace(f"{self.name}.{role}")
            live, expected = normalise_live(frames), normalise_recorded(recorded)
            for index, (got, want) in enumerate(zip(live, expected, strict=False)):
                assert got == want, f"{self.name}.{role} frame {index}: {got} != {want}"
            assert len(live) == len(expected), f"{self.name}.{role}: {len(live)} frames, recorded {len(expected)}"


def prompt_body(header: dict[str, Any], key: str = "post_prompt") -> dict[str, Any]:
    return header_json(header, key)["request"]["json"]


async def run_prompt(http: httpx.AsyncClient, fake: FakeComfyUI, body: dict[str, Any]) -> None:
    """A setup run nobody listens to (sockets connect afterwards)."""
    response = await http.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    await asyncio.to_thread(fake.wait_idle)


async def replay(
    fake: FakeComfyUI,
    name: str,
    roles: list[str],
    *,
    setup: Trigger | None = None,
    during: Trigger | None = None,
    feature_flags: dict[str, Any] | None = None,
    drop_connect_status: bool = False,
    client_ids: dict[str, str] | None = None,
) -> Replay:
    """Connect every role, POST the header's prompt, run `during`, compare every socket with its trace."""
    async with httpx.AsyncClient(base_url=fake.url) as http:
        run = Replay(fake, http, name, client_ids=client_ids or {})
        if setup:
            await setup(run)
        for role in roles:
            recorder = await run.connect(role)
            if drop_connect_status:
                recorder.frames.clear()  # trace recorded on an already open socket (ws/l_*)
        if feature_flags:
            submitter = run.sockets[roles[0]]
            await submitter.send_json(feature_flags)
            await submitter.wait_for(lambda f: is_text(f, "feature_flags"))
        await run.post_prompt(prompt_body(run.header(roles[0])))
        if during:
            await during(run)
        received = await run.finish()
        run.assert_matches(received)
        for recorder in run.sockets.values():
            await recorder.close()
    return run


def warm_up(name: str, **knobs: Any) -> Trigger:
    """Setup: the same graph with another seed ran before, so the loaders are cached as recorded.

    `knobs` are applied afterwards, so a slow step_time does not slow the warm-up run.
    """

    async def setup(run: Replay) -> None:
        body = json.loads(json.dumps(prompt_body(ws_trace(name)[0])))
        body["prompt"]["3"]["inputs"]["seed"] += 1
        await run_prompt(run.http, run.fake, body)
        run.fake.configure(**knobs)

    return setup
