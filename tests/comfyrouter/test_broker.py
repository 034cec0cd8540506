"""Celery's broker transport and settings source: what each task message sends through."""

from __future__ import annotations

import kombu
from django.conf import settings

from comfyrouter import broker
from comfyrouter.celery import app


def test_every_redis_broker_url_takes_the_transport_that_keeps_its_client():
    for url in ("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/0", "redis+socket:///tmp/redis.sock"):
        assert kombu.Connection(url).get_transport_cls() is broker.Transport, url


def test_a_channel_sends_with_one_client_and_drops_it_with_its_pool():
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, broker.Channel)
        sender = channel._create_client()
        assert channel._create_client() is sender
        assert channel._create_client(asynchronous=True) is not sender  # the consumer's, kombu's own
        channel._disconnect_pools()
        assert channel._create_client() is not sender


def test_celery_reads_the_django_settings():
    assert app.conf.broker_transport_options == settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert app.conf.task_ignore_result is True and app.conf.worker_disable_prefetch is True
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE
