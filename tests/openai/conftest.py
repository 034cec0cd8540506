"""The OpenAI API under test: a real Daphne and a real Celery worker on the test database, fake nodes.

Daphne and the worker live for the whole session (starting them per test would cost seconds each);
every test still gets a clean database, its own fake node and a fresh API key.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from django.conf import settings
from openai import AsyncOpenAI, OpenAI

from comfyrouter.services import api_key_create
from tests.generations.conftest import ENGINE_SETTINGS, builtin_endpoints, fakes, register  # noqa: F401
from tests.workers import ROOT, process_env, start_worker

ASGI_APP = "comfyrouter.asgi:application"
MAX_FILE = 200_000  # the server's limit on one uploaded file, small so a test can exceed it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daphne:
    """`daphne comfyrouter.asgi:application` as a child process, its output kept for failed tests."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), ASGI_APP]
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_up(self, timeout: float = 30) -> Daphne:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daphne did not start:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, redis_server) -> Iterator[Daphne]:
    """Daphne plus a worker, both on the test database and Redis."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    env = process_env(
        **{name: str(value) for name, value in ENGINE_SETTINGS.items()},
        COMFYROUTER_MAX_DOWNLOAD_BYTES=str(MAX_FILE),
    )
    worker = start_worker(env)
    server = Daphne(env)
    try:
        yield server.wait_up()
    finally:
        server.stop()
        worker.stop()


@pytest.fixture
def server(stack, transactional_db, builtin_endpoints) -> Iterator[str]:  # noqa: F811
    yield stack.url
    print("\n".join(["--- daphne log ---", *stack.lines[-60:]]))


@pytest.fixture
def key(user) -> str:
    return api_key_create(owner=user, name="openai")[1]


@pytest.fixture
def node(fakes):  # noqa: F811
    """One fake ComfyUI with a few quick sampler steps."""
    fake = fakes(steps_override=3)
    register(fake, "gpu")
    return fake


@pytest.fixture
def client(server, key) -> OpenAI:
    return OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def async_client(server, key) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=30)
