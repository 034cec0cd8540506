"""Requests run their sync code on reused threads, which keep their database connections."""

from __future__ import annotations

import asyncio
import threading

import asgiref.sync
import pytest
from django.core import signals

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
    calls = counted_calls(monkeypatch, asgiref.sync.AsyncToSync)

    await get(handler, "/where")

    assert calls == []


def counted_calls(monkeypatch, adapter: type) -> list[object]:
    """The adapter's calls (asgiref's AsyncToSync: back to the event loop; SyncToAsync: to a request thread), as
    they are made."""
    calls = []
    original = adapter.__call__

    def counted(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(adapter, "__call__", counted)
    return calls


async def test_a_request_starts_is_served_and_finishes_in_one_hop_to_its_thread(handler, monkeypatch):
    # Stock ASGI hops three times: request_started's receivers, the view, the response's close.
    threads = []

    def on_signal(sender, **kwargs):
        threads.append(threading.get_ident())

    signals.request_started.connect(on_signal)
    signals.request_finished.connect(on_signal)
    hops = counted_calls(monkeypatch, asgiref.sync.SyncToAsync)
    try:
        answer = await get(handler, "/where")
    finally:
        signals.request_started.disconnect(on_signal)
        signals.request_finished.disconnect(on_signal)

    assert len(hops) == 1
    assert threads == [answer["thread"], answer["thread"]]


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
async def test_a_streamed_response_finishes_after_its_body_is_read(handler):
    request_thread_urls.events.clear()

    def on_finished(sender, **kwargs):
        request_thread_urls.events.append("finished")

    signals.request_finished.connect(on_finished)
    try:
        answer = await get(handler, "/streamed")
    finally:
        signals.request_finished.disconnect(on_finished)

    assert answer == {"streamed": True}
    assert request_thread_urls.events == ["body read", "finished"]
