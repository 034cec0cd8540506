"""The only sender to the channel layer: job progress, previews and state changes.

Workers are sync; the channel layer is async. One publisher thread per process owns an event
loop and sends messages in order, so a slow Redis never blocks a job and the loop (and its
Redis connections) is not rebuilt for every frame.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypedDict

import redis
from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)

PREVIEW_TTL_SECONDS = 600
# Beyond this many unsent messages Redis is not keeping up: drop rather than grow without bound.
MAX_BACKLOG = 1000


def job_group(job_id: Any) -> str:
    return f"job.{job_id}"


NODES_GROUP = "nodes"
JOBS_GROUP = "jobs"


class ProgressEvent(TypedDict):
    type: str  # "job.progress"
    job_id: str
    value: int
    max: int
    node: str
    node_title: str


class StateEvent(TypedDict):
    type: str  # "job.state"
    job_id: str
    state: str
    error: str


class PreviewEvent(TypedDict):
    type: str  # "job.preview"
    job_id: str
    seq: int
    image: bytes


class _Publisher:
    def __init__(self) -> None:
        self.pid = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue | None = None
        self.lock = threading.Lock()

    def send(self, group: str, message: dict[str, Any]) -> None:
        loop = self._ensure_running()
        loop.call_soon_threadsafe(self._enqueue, group, message)

    def _enqueue(self, group: str, message: dict[str, Any]) -> None:
        assert self.queue is not None
        if self.queue.qsize() >= MAX_BACKLOG:
            self.queue.get_nowait()
        self.queue.put_nowait((group, message))

    def _ensure_running(self) -> asyncio.AbstractEventLoop:
        # Celery's prefork pool forks after import: each child process needs its own thread.
        with self.lock:
            if self.loop is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.loop = asyncio.new_event_loop()
                self.queue = asyncio.Queue()
                threading.Thread(target=self._run, args=(self.loop,), name="progress", daemon=True).start()
            return self.loop

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        layer = get_channel_layer()
        assert self.queue is not None
        while True:
            group, message = await self.queue.get()
            try:
                await layer.group_send(group, message)
            except Exception:  # noqa: BLE001 - live progress is best effort; the DB has the truth
                log.warning("could not publish %s to %s", message.get("type"), group, exc_info=True)


_publisher = _Publisher()


def publish(group: str, message: dict[str, Any]) -> None:
    """Send `message` to a channel-layer group without waiting for Redis."""
    _publisher.send(group, message)


_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    # One connection pool per process (pools must not cross a fork).
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _clients[pid]


def preview_key(job_id: Any) -> str:
    return f"comfyrouter:preview:{job_id}"


def store_preview(job_id: Any, image: bytes) -> None:
    """Keep the newest preview JPEG of a job for late joiners and GET /preview/<id>."""
    try:
        _redis().set(preview_key(job_id), image, ex=PREVIEW_TTL_SECONDS)
    except redis.RedisError:
        log.warning("could not store the preview of job %s", job_id, exc_info=True)


def latest_preview(job_id: Any) -> bytes | None:
    try:
        return _redis().get(preview_key(job_id))
    except redis.RedisError:
        return None


def done_channel(job_id: Any) -> str:
    return f"comfyrouter:done:{job_id}"


def notify_finished(job_id: Any) -> None:
    """Wake every HTTP caller waiting for this job (see wait_finished)."""
    try:
        _redis().publish(done_channel(job_id), b"1")
    except redis.RedisError:
        log.warning("could not announce the end of job %s", job_id, exc_info=True)


def wait_finished(job_id: Any, *, timeout: float, is_finished: Callable[[], bool]) -> bool:
    """Block until the job ends or `timeout` passes; True if it ended. Falls back to polling."""
    deadline = time.monotonic() + timeout
    try:
        pubsub = _redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(done_channel(job_id))
    except redis.RedisError:
        pubsub = None
    try:
        # Checked after subscribing: a job ending in between is then seen one way or the other.
        while not is_finished():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait = min(remaining, 1.0)  # re-check now and then: a lost message costs at most a second
            if pubsub is None:
                time.sleep(min(wait, 0.2))
            else:
                pubsub.get_message(timeout=wait)
        return True
    finally:
        if pubsub is not None:
            pubsub.close()
