"""Job progress, previews and state changes to the channel layer; latest previews; end-of-job wake-ups.

`publish` is comfyrouter.realtime's per-process publisher thread (shared with nodes/, which must
not import this app), re-exported here so job code has one place to send from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypedDict

import redis

from comfyrouter.realtime import JOBS_GROUP, MAX_BACKLOG, NODES_GROUP, publish
from comfyrouter.redisconn import redis_client

log = logging.getLogger(__name__)

__all__ = ["JOBS_GROUP", "MAX_BACKLOG", "NODES_GROUP", "job_group", "latest_preview", "notify_finished",
           "publish", "store_preview", "wait_finished"]  # fmt: skip

PREVIEW_TTL_SECONDS = 600


def job_group(job_id: Any) -> str:
    return f"job.{job_id}"


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


def preview_key(job_id: Any) -> str:
    return f"comfyrouter:preview:{job_id}"


def store_preview(job_id: Any, image: bytes) -> None:
    """Keep the newest preview JPEG of a job for late joiners and GET /preview/<id>."""
    try:
        redis_client().set(preview_key(job_id), image, ex=PREVIEW_TTL_SECONDS)
    except redis.RedisError:
        log.warning("could not store the preview of job %s", job_id, exc_info=True)


def latest_preview(job_id: Any) -> bytes | None:
    try:
        return redis_client().get(preview_key(job_id))
    except redis.RedisError:
        return None


def done_channel(job_id: Any) -> str:
    return f"comfyrouter:done:{job_id}"


def notify_finished(job_id: Any) -> None:
    """Wake every HTTP caller waiting for this job (see wait_finished)."""
    try:
        redis_client().publish(done_channel(job_id), b"1")
    except redis.RedisError:
        log.warning("could not announce the end of job %s", job_id, exc_info=True)


def wait_finished(job_id: Any, *, timeout: float, is_finished: Callable[[], bool]) -> bool:
    """Block until the job ends or `timeout` passes; True if it ended. Falls back to polling."""
    deadline = time.monotonic() + timeout
    channel = done_channel(job_id).encode()
    try:
        pubsub = _subscription()
        pubsub.subscribe(channel)
    except redis.RedisError:
        _drop_subscription()
        pubsub = None
    try:
        # Checked after subscribing: a job ending in between is then seen one way or the other.
        if is_finished():
            return True
        # Re-checked now and then: a lost message costs at most a second (without Redis, a fifth).
        every = 1.0 if pubsub is not None else 0.2
        check_at = time.monotonic() + every
        while (now := time.monotonic()) < deadline:
            if now >= check_at:
                if is_finished():
                    return True
                check_at = now + every
            wait = min(deadline, check_at) - now
            if pubsub is None:
                time.sleep(wait)
                continue
            try:
                # Subscription confirmations are skipped (None) without a wait: not worth a query. A message
                # of an earlier wait on this connection, sent after it stopped listening, is skipped too.
                message = pubsub.get_message(timeout=wait)
            except redis.RedisError:  # Redis restarting: its message may be lost; the database says
                log.warning("lost the wake-up subscription of job %s; polling", job_id, exc_info=True)
                _drop_subscription()
                pubsub, every, check_at = None, 0.2, now
                continue
            if message is not None and message["channel"] == channel:
                return True  # published after the final state was committed
        return is_finished()
    finally:
        if pubsub is not None:
            try:
                pubsub.unsubscribe(channel)
            except redis.RedisError:
                _drop_subscription()


# Each thread keeps its wake-up subscription's connection from one wait to the next: a new one for every
# wait cost a connect and its handshake (0.15 ms of CPU), as much as the rest of the wait.
_waits = threading.local()


def _subscription() -> redis.client.PubSub:
    pubsub, pid = getattr(_waits, "subscription", (None, 0))
    if pubsub is None or pid != os.getpid():  # a forked process must not share its parent's socket
        pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        _waits.subscription = (pubsub, os.getpid())
    return pubsub


def _drop_subscription() -> None:
    pubsub, pid = getattr(_waits, "subscription", (None, 0))
    _waits.subscription = (None, 0)
    if pubsub is not None and pid == os.getpid():
        with contextlib.suppress(redis.RedisError, OSError):
            pubsub.close()
