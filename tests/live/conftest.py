"""Live-progress fixtures: Daphne serving the real ASGI app on a free port, and WebSocket subscribers."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from generations.models import Job
from tests.generations.conftest import (  # noqa: F401 - fixtures used by this package's tests
    builtin_endpoints,
    engine_settings,
    fakes,
    wait_until,
    worker,
    worker_env,
)
from tests.workers import ROOT

ASGI_APP = "comfyrouter.asgi:application"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Daphne:
    """`daphne comfyrouter.asgi:application` as a child process on the test database."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    lines: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> Daphne:
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), ASGI_APP]
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self._up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daphne did not start:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.1)
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def daphne(worker_env) -> Iterator[Daphne]:  # noqa: F811 - the fixture imported above
    server = Daphne(env=worker_env).start()
    yield server
    server.stop()
    print("\n".join(["--- daphne log ---", *server.lines[-100:]]))


def wait_running(job: Job, *, timeout: float = 15) -> Job:
    """Until the job samples on its node (state running, at least one step done)."""
    sampling = Job.objects.filter(id=job.id, state=Job.State.RUNNING, progress_value__gt=0)
    wait_until(sampling.exists, timeout=timeout, what=f"job {job.id} to run")
    return Job.objects.get(id=job.id)


@dataclass
class Subscriber:
    """A browser-side WebSocket client that records every message it gets (JSON, or bytes for previews)."""

    url: str
    origin: str
    ack: bool = True
    messages: list[Any] = field(default_factory=list)

    async def run(self, *, until_final: bool = True, timeout: float = 30) -> list[Any]:
        async with connect(self.url, origin=self.origin, max_size=None) as ws:
            async with asyncio.timeout(timeout):
                async for frame in ws:
                    message = frame if isinstance(frame, bytes) else json.loads(frame)
                    self.messages.append(message)
                    if self.ack and (isinstance(message, bytes) or message.get("type") == "preview"):
                        await ws.send(json.dumps({"type": "ack"}))
                    if until_final and isinstance(message, dict) and message.get("type") in FINAL:
                        return self.messages
        return self.messages

    def types(self) -> list[str]:
        return ["preview" if isinstance(m, bytes) else m["type"] for m in self.messages]

    def first(self) -> dict[str, Any]:
        return asyncio.run(first_message(self.url, self.origin))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict) and m["type"] == kind]


FINAL = {"done", "failed", "cancelled"}


async def first_message(url: str, origin: str) -> dict[str, Any]:
    async with connect(url, origin=origin) as ws:
        return json.loads(await ws.recv())


@pytest.fixture
def subscriber(daphne):
    def make(job_id: Any, query: str = "", **kw: Any) -> Subscriber:
        return Subscriber(daphne.ws(f"/ws/jobs/{job_id}/{query}"), daphne.url, **kw)

    return make


@pytest.fixture
def staff_session(operator) -> str:
    """The session cookie of a logged-in staff user, valid for the Daphne process too (same DB and key)."""
    from django.test import Client

    client = Client()
    client.force_login(operator)
    return client.cookies["sessionid"].value
