"""The process's Redis client for our own keys (previews, locks, flags, wake-ups)."""

from __future__ import annotations

import os

import redis
from django.conf import settings

_clients: dict[int, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """This process's client on REDIS_URL: one pool per pid, since a forked process must not share sockets."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _clients[pid]
