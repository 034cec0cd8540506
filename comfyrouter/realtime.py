"""The process-wide publisher to the channel layer, shared by every app (nodes, generations).

Workers are sync; the channel layer is async. One publisher thread per process owns an event
loop and sends messages in order, so a slow Redis never blocks a job and the loop (and its
Redis connections) is not rebuilt for every frame.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# Beyond this many unsent messages Redis is not keeping up: drop rather than grow without bound.
MAX_BACKLOG = 1000
NODES_GROUP = "nodes"
JOBS_GROUP = "jobs"


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
                threading.Thread(target=self._run, args=(self.loop,), name="realtime", daemon=True).start()
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
            except Exception:  # noqa: BLE001 - live updates are best effort; the DB has the truth
                log.warning("could not publish %s to %s", message.get("type"), group, exc_info=True)


_publisher = _Publisher()


def publish(group: str, message: dict[str, Any]) -> None:
    """Send `message` to a channel-layer group without waiting for Redis."""
    _publisher.send(group, message)
