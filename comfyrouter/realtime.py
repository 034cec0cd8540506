"""The process-wide publisher to the channel layer, shared by every app (nodes, generations).

One publisher thread per process sends the messages in order, so a slow Redis never blocks a job. It
writes them as channels_redis's pub/sub layer does (its serializer, one PUBLISH per message to the
group's channel) with the process's sync Redis client, each batch in one round trip: going through the
async layer cost an event loop in the thread and a wake-up of it per message.

Messages that only say where something is now (a job's progress, its newest preview) are
conflated: when newer ones of the same job queue up behind one, the older one is not sent. A
viewer loses nothing it could have seen, and a burst of sampler steps (a fast GPU, or a prompt
re-attached mid-run) costs one Redis round trip instead of one per step. They are also paced:
at most one of each kind per job every MIN_INTERVAL s (a 30 fps preview), the newest going out
when the interval ends. A GPU doing 50 steps a second no longer costs 100 publishes a second per
job, and a job's other messages (its state) still go out after its paced ones, never before.

Most jobs have no viewer: an API caller waits for the result. Progress and previews of a group no one
subscribes to are not sent at all. Whether anyone does is asked of Redis (PUBSUB NUMSUB) at most every
AUDIENCE_RECHECK s per group, so a viewer who joins in between misses at most that much of them; it gets the
job's state and newest preview on joining anyway. Other messages are always sent.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from comfyrouter.redisconn import redis_client

log = logging.getLogger(__name__)

# Beyond this many unsent messages Redis is not keeping up: the oldest are dropped rather than grow without bound.
MAX_BACKLOG = 1000
NODES_GROUP = "nodes"
JOBS_GROUP = "jobs"
# Message types whose newest one replaces the unsent older ones of the same group and job.
CONFLATED = frozenset({"job.progress", "job.preview"})
# Of each CONFLATED type, one message per job goes out at most this often.
MIN_INTERVAL = 1 / 30
# How long Redis's answer to "does anyone listen to this group?" is trusted.
AUDIENCE_RECHECK = 0.25

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


class Pacer:
    """Holds back a CONFLATED message sent within MIN_INTERVAL of the last one of its group, type and job;
    the newest held one goes out once the interval has passed, or just before another message of its job."""

    def __init__(self, interval: float = MIN_INTERVAL) -> None:
        self.interval = interval
        self.sent_at: dict[tuple[str, str, Any], float] = {}
        self.held: dict[tuple[str, str, Any], Outgoing] = {}

    def admit(self, messages: Iterable[Outgoing], now: float) -> list[Outgoing]:
        """What to send now, in order: those of `messages` not held back, then the held ones that are due."""
        out: list[Outgoing] = []
        for group, message in messages:
            kind, job = message.get("type"), message.get("job_id")
            if kind not in CONFLATED:
                # Where the job stood goes out before what happened to it next (a viewer must not see
                # "running 95 %" after "succeeded").
                out.extend(self.held.pop(key) for key in [key for key in self.held if key[2] == job])
                out.append((group, message))
                continue
            key = (group, kind, job)
            last = self.sent_at.get(key)
            if key in self.held or (last is not None and now - last < self.interval):
                self.held[key] = (group, message)  # replaces an older held one
            else:
                self.sent_at[key] = now
                out.append((group, message))
        out.extend(self._due(now))
        return out

    def next_due(self) -> float | None:
        """When the first held message is due (monotonic seconds), or None."""
        return min((self.sent_at[key] + self.interval for key in self.held), default=None)

    def _due(self, now: float) -> list[Outgoing]:
        due = [key for key in self.held if now - self.sent_at[key] >= self.interval]
        for key in due:
            self.sent_at[key] = now
        # Forget jobs that went quiet: the table holds only what was sent within the interval.
        for key in [key for key, at in self.sent_at.items() if now - at >= self.interval and key not in self.held]:
            del self.sent_at[key]
        return [self.held.pop(key) for key in due]


class Audience:
    """Which groups have subscribers, as Redis last said, asked again once an answer is `recheck` s old.

    Thread-safe: a sender asks `absent` (no I/O), the publisher thread `watched` (a round trip for the groups
    it has no fresh answer for). `count` maps group names to their subscriber counts.
    """

    def __init__(self, count: Callable[[list[str]], dict[str, int]], recheck: float = AUDIENCE_RECHECK) -> None:
        self.count = count
        self.recheck = recheck
        self.answers: dict[str, tuple[bool, float]] = {}  # group: (has subscribers, asked at)
        self.lock = threading.Lock()

    def absent(self, group: str, now: float) -> bool:
        """Whether Redis said no one listens to `group`, less than `recheck` s ago."""
        with self.lock:
            answer = self.answers.get(group)
        return answer is not None and not answer[0] and now - answer[1] < self.recheck

    def watched(self, groups: Collection[str], now: float) -> set[str]:
        """Those of `groups` someone listens to; the groups without a fresh answer are asked about first."""
        with self.lock:
            stale = [group for group in groups if not self._fresh(group, now)]
        if stale:
            try:
                counts = self.count(stale)
            except Exception:  # noqa: BLE001 - not knowing must not silence a viewer: send, as if watched
                log.warning("could not count the subscribers of %d groups", len(stale), exc_info=True)
                counts = dict.fromkeys(stale, 1)
            with self.lock:
                # Answers no sender asked about again are dropped once stale: the table holds live jobs only.
                for group in [group for group in self.answers if not self._fresh(group, now)]:
                    del self.answers[group]
                self.answers.update((group, (counts.get(group, 0) > 0, now)) for group in stale)
        with self.lock:
            return {group for group in groups if self.answers[group][0]}

    def _fresh(self, group: str, now: float) -> bool:
        answer = self.answers.get(group)
        return answer is not None and now - answer[1] < self.recheck


def group_channel(group: str) -> str:
    """The Redis pub/sub channel of a channel-layer group, named as channels_redis's pub/sub layer names it."""
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")
    return f"{prefix}__group__{group}"


def subscriber_counts(groups: list[str]) -> dict[str, int]:
    """How many subscribers each group has: its pub/sub channel's."""
    channels = {group_channel(group): group for group in groups}
    counts = redis_client().pubsub_numsub(*channels)
    return {channels[name.decode()]: count for name, count in counts}


class _Publisher:
    def __init__(self) -> None:
        self.pid = 0
        self.pending: collections.deque[Outgoing] = collections.deque(maxlen=MAX_BACKLOG)
        self.pacer = Pacer()
        self.audience = Audience(subscriber_counts)
        self.wakes_at = math.inf  # when the waiting publisher thread wakes by itself (a held message is due)
        self.ready = threading.Condition()  # guards all of the above; notified when there is something to send

    def send(self, group: str, message: dict[str, Any]) -> None:
        if message.get("type") in CONFLATED and self.audience.absent(group, time.monotonic()):
            return  # no one watches: not even a wake-up
        with self.ready:
            self._ensure_running()
            ready = self.pacer.admit([(group, message)], time.monotonic())
            self.pending.extend(ready)
            # A busy publisher thread looks at `pending` again before it waits; a waiting one needs waking
            # only for a message to send now, or one held that is due before it wakes.
            if ready or (self.pacer.next_due() or math.inf) < self.wakes_at:
                self.ready.notify()

    def _ensure_running(self) -> None:
        # Celery's prefork pool forks after import: each child process needs its own thread.
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.pending.clear()  # messages queued by the parent are the parent's to send
            self.pacer = Pacer()
            self.audience = Audience(subscriber_counts)
            self.wakes_at = math.inf
            threading.Thread(target=self._run, name="realtime", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._publish(self._next_batch())

    def _next_batch(self) -> list[Outgoing]:
        """Waits for messages to send, the held ones included once due, and takes them all."""
        with self.ready:
            while True:
                self.pending.extend(self.pacer.admit([], time.monotonic()))  # the held ones now due
                if self.pending:
                    self.wakes_at = -math.inf  # sending: only a message to send now notifies (unheard, harmless)
                    batch = list(self.pending)
                    self.pending.clear()
                    return batch
                self.wakes_at = self.pacer.next_due() or math.inf
                self.ready.wait(None if self.wakes_at == math.inf else max(0.0, self.wakes_at - time.monotonic()))

    def _publish(self, batch: list[Outgoing]) -> None:
        """Sends `batch` in order, in one round trip to Redis, in the channel layer's wire format."""
        # Progress and previews go only to groups someone listens to (see the module's docstring).
        live = {group for group, message in batch if message.get("type") in CONFLATED}
        watched = self.audience.watched(live, time.monotonic()) if live else set()
        try:
            layer = get_channel_layer()
            pipe = redis_client().pipeline(transaction=False)
            for group, message in conflate(batch):
                if message.get("type") not in CONFLATED or group in watched:
                    pipe.publish(group_channel(group), layer.serialize(message))
            pipe.execute()
        except Exception:  # noqa: BLE001 - live updates are best effort; the DB has the truth
            log.warning("could not publish %d messages", len(batch), exc_info=True)


_publisher = _Publisher()


def publish(group: str, message: dict[str, Any]) -> None:
    """Send `message` to a channel-layer group without waiting for Redis."""
    _publisher.send(group, message)
