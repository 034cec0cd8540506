"""Requests run their sync code on reused threads, which keep their database connections."""

from __future__ import annotations

import asyncio
import json

import pytest

from comfyrouter import handlers
from comfyrouter.handlers import PooledASGIHandler
from tests.comfyrouter import request_thread_urls

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.comfyrouter.request_thread_urls")]


async def get(handler: PooledASGIHandler, path: str) -> dict:
    """GET `path` through the handler; the JSON answer."""
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"localhost")], "http_version": "1.1", "scheme": "http",
             "server": ("localhost", 80), "client": ("127.0.0.1", 5)}  # fmt: skip
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # like a server: the client stays connected

    async def send(message):
        sent.append(message)

    await handler(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return json.loads(body)


async def test_requests_one_after_another_share_a_thread_and_its_database_connection():
    handler = PooledASGIHandler()

    first = await get(handler, "/where")
    second = await get(handler, "/where")

    assert first["thread"] == second["thread"]
    assert first["db"] == second["db"]  # CONN_MAX_AGE keeps it: no connect per request


async def test_concurrent_requests_get_threads_of_their_own():
    handler = PooledASGIHandler()
    request_thread_urls.release.clear()
    stuck = asyncio.create_task(get(handler, "/stuck"))
    await asyncio.sleep(0.2)

    meanwhile = await get(handler, "/where")
    request_thread_urls.release.set()
    held = await stuck

    assert meanwhile["thread"] != held["thread"]
    assert len(handler.idle) == 2


async def test_threads_beyond_the_idle_limit_end_after_the_burst(monkeypatch):
    monkeypatch.setattr(handlers, "MAX_IDLE_THREADS", 1)
    handler = PooledASGIHandler()
    request_thread_urls.release.clear()
    stuck = asyncio.create_task(get(handler, "/stuck"))
    await asyncio.sleep(0.2)

    await get(handler, "/where")
    request_thread_urls.release.set()
    await stuck

    assert len(handler.idle) == 1
