"""Requests run their sync code on reused threads, which keep their database connections."""

from __future__ import annotations

import asyncio

import asgiref.sync
import pytest

from comfyrouter import handlers
from comfyrouter.handlers import PooledASGIHandler
from tests.asgi import asgi_request
from tests.comfyrouter import request_thread_urls

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.comfyrouter.request_thread_urls")]


@pytest.fixture
def handler():
    handler = PooledASGIHandler()
    yield handler
    handler.retire_idle()  # their connections would keep the test database from being dropped


async def get(handler: PooledASGIHandler, path: str) -> dict:
    """GET `path` through the handler; the JSON answer."""
    status, body = await asgi_request(handler, path)
    assert status == 200
    return body


async def test_requests_one_after_another_share_a_thread_and_its_database_connection(handler):

    first = await get(handler, "/where")
    second = await get(handler, "/where")

    assert first["thread"] == second["thread"]
    assert first["db"] == second["db"]  # CONN_MAX_AGE keeps it: no connect per request


async def test_concurrent_requests_get_threads_of_their_own(handler):
    request_thread_urls.release.clear()
    stuck = asyncio.create_task(get(handler, "/stuck"))
    await asyncio.sleep(0.2)

    meanwhile = await get(handler, "/where")
    request_thread_urls.release.set()
    held = await stuck

    assert meanwhile["thread"] != held["thread"]
    assert len(handler.idle) == 2


async def test_threads_beyond_the_idle_limit_end_after_the_burst(handler, monkeypatch):
    monkeypatch.setattr(handlers, "MAX_IDLE_THREADS", 1)
    request_thread_urls.release.clear()
    stuck = asyncio.create_task(get(handler, "/stuck"))
    await asyncio.sleep(0.2)

    await get(handler, "/where")
    request_thread_urls.release.set()
    await stuck

    assert len(handler.idle) == 1


async def test_a_request_goes_to_its_thread_once_and_never_back_to_the_event_loop(handler, monkeypatch):
    # With the middleware chain built async, sync middleware hand the URL resolution back to the loop
    # (async_to_sync) and the view hops to the thread again.
    calls = []
    original = asgiref.sync.AsyncToSync.__call__

    def counted(self, *args, **kwargs):
        calls.append(self.awaitable)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(asgiref.sync.AsyncToSync, "__call__", counted)

    await get(handler, "/where")

    assert calls == []
