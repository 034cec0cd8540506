"""The process-wide publisher to the channel layer, shared by every app (nodes, generations).

Workers are sync; the channel layer is async. One publisher thread per process owns an event
loop and sends messages in order, so a slow Redis never blocks a job and the loop (and its
Redis connections) is not rebuilt for every frame.

Messages that only say where something is now (a job's progress, its newest preview) are
conflated: when newer ones of the same job queue up behind one, the older one is not sent. A
viewer loses nothing it could have seen, and a burst of sampler steps (a fast GPU, or a prompt
re-attached mid-run) costs one Redis round trip instead of one per step.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# Beyond this many unsent messages Redis is not keeping up: the oldest are dropped rather than grow without bound.
MAX_BACKLOG = 1000
NODES_GROUP = "nodes"
JOBS_GROUP = "jobs"
# Message types whose newest one replaces the unsent older ones of the same group and job.
CONFLATED = frozenset({"job.progress", "job.preview"})

Outgoing = tuple[str, dict[str, Any]]


def conflate(messages: Iterable[Outgoing]) -> list[Outgoing]:
    """`messages` in order, without a CONFLATED message that a newer one of its group, type and job follows."""
    kept: list[Outgoing] = []
    newest: set[tuple[str, str, Any]] = set()
    for group, message in reversed(list(messages)):
        kind = message.get("type")
        if kind in CONFLATED:
            key = (group, kind, message.get("job_id"))
            if key in newest:
                continue
            newest.add(key)
        kept.append((group, message))
    kept.reverse()
    return kept


class _Publisher:
    def __init__(self) -> None:
        self.pid = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: collections.deque[Outgoing] = collections.deque(maxlen=MAX_BACKLOG)
        self.wakeup: asyncio.Event | None = None
        self.idle = False  # the publisher thread waits for messages: a sender must wake it
        self.lock = threading.Lock()

    def send(self, group: str, message: dict[str, Any]) -> None:
        loop = self._ensure_running()
        self.pending.append((group, message))
        # Waking the loop is a write to its self-pipe: skip it while the thread is busy sending,
        # as it looks at `pending` again before it waits.
        if self.idle:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        assert self.wakeup is not None
        self.wakeup.set()

    def _ensure_running(self) -> asyncio.AbstractEventLoop:
        # Celery's prefork pool forks after import: each child process needs its own thread.
        with self.lock:
            if self.loop is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.loop = asyncio.new_event_loop()
                self.pending.clear()  # messages queued by the parent are the parent's to send
                self.idle = False
                threading.Thread(target=self._run, args=(self.loop,), name="realtime", daemon=True).start()
            return self.loop

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        layer = get_channel_layer()
        self.wakeup = asyncio.Event()
        while True:
            self.wakeup.clear()
            self.idle = True
            if not self.pending:  # checked after `idle` is set: a message sent in between wakes us
                await self.wakeup.wait()
            self.idle = False
            batch = [self.pending.popleft() for _ in range(len(self.pending))]
            for group, message in conflate(batch):
                try:
                    await layer.group_send(group, message)
                except Exception:  # noqa: BLE001 - live updates are best effort; the DB has the truth
                    log.warning("could not publish %s to %s", message.get("type"), group, exc_info=True)


_publisher = _Publisher()


def publish(group: str, message: dict[str, Any]) -> None:
    """Send `message` to a channel-layer group without waiting for Redis."""
    _publisher.send(group, message)
