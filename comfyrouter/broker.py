"""Celery's broker transport: kombu's Redis transport, sending with one Redis client per channel.

kombu's Redis channel builds a new `redis.Redis` for every message it sends, and redis-py's constructor copies its
80-odd response callbacks each time: 0.17 of the 0.5 ms a task message cost to send. That client is only a front
for the channel's connection pool, which is thread-safe: this channel keeps one, and drops it with the pool.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sender: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's BRPOP client: kombu keeps that one already
            return super()._create_client(asynchronous=True)
        if self._sender is None:
            self._sender = super()._create_client()
        return self._sender

    def _disconnect_pools(self) -> None:
        self._sender = None
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Broker URLs redis://, rediss:// and redis+socket:// (the embedded server) take this transport."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
