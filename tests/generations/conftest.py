"""Engine fixtures: a real Celery worker process, fake ComfyUI nodes on real ports, and waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings

from generations.models import Job
from nodes.models import Node
from tests.fake_comfyui import FakeComfyUI
from tests.workers import CeleryProcess, process_env, start_worker

# Short engine timings so failure paths end in seconds; the worker process gets the same.
ENGINE_SETTINGS = {
    "COMFYROUTER_HEARTBEAT_INTERVAL": 1,
    "COMFYROUTER_STALE_AFTER": 3,
    "COMFYROUTER_IDLE_TIMEOUT": 5,
    "COMFYROUTER_COMFY_TIMEOUT": 3,
    "COMFYROUTER_QUEUE_TIMEOUT": 60,
}


@pytest.fixture
def sent() -> list[tuple[str, list]]:
    """The task messages this process publishes: (task name, args), as Celery is about to send them."""
    messages: list[tuple[str, list]] = []

    def record(sender: str, body: tuple, **kwargs) -> None:
        messages.append((sender, list(body[0])))

    before_task_publish.connect(record, weak=False)
    yield messages
    before_task_publish.disconnect(record)


@pytest.fixture
def engine_settings(settings):
    for name, value in ENGINE_SETTINGS.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def worker_env(transactional_db, engine_settings) -> dict[str, str]:
    # Messages left by an earlier test must not reach this test's worker.
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    return process_env(**{name: str(value) for name, value in ENGINE_SETTINGS.items()})


@pytest.fixture
def worker(worker_env):
    process = start_worker(worker_env)
    yield process
    process.stop()
    # Shown by pytest only when the test failed.
    print("\n".join(["--- worker log ---", *process.lines[-200:]]))


@pytest.fixture
def fakes():
    """A factory of fake ComfyUI servers, all stopped at the end of the test."""
    started: list[FakeComfyUI] = []

    def make(**knobs) -> FakeComfyUI:
        fake = FakeComfyUI(**knobs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


def register(fake: FakeComfyUI, name: str, **fields) -> Node:
    """A node as the health check would leave it: idle, with the fake's model lists."""
    fields.setdefault("status", Node.Status.IDLE)
    fields.setdefault("health", {"models": fake.knobs.models})
    return Node.objects.create(name=name, base_url=fake.url, **fields)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_finished(jobs: Iterable[Job], *, timeout: float = 30) -> list[Job]:
    ids = [job.id for job in jobs]
    done = Job.objects.filter(id__in=ids, state__in=Job.FINISHED_STATES)
    wait_until(lambda: done.count() == len(ids), timeout=timeout, what=f"{len(ids)} job(s) to finish")
    return list(Job.objects.filter(id__in=ids).select_related("node"))


__all__ = ["CeleryProcess", "register", "wait_finished", "wait_until"]


@pytest.fixture
def builtin_endpoints(transactional_db):
    """The built-in endpoints, published again: transactional tests flush the migration's rows."""
    import importlib

    from django.apps import apps

    importlib.import_module("workflows_app.migrations.0002_builtin_endpoints").create_builtins(apps, None)


@pytest.fixture
def engine(worker_env, settings):
    """Start workers with extra engine settings, applied to this process too: `engine(COMFYROUTER_X=1)`."""
    started: list[CeleryProcess] = []

    def start(env: dict[str, str] | None = None, *, concurrency: int = 8, **overrides) -> CeleryProcess:
        for name, value in overrides.items():
            setattr(settings, name, value)
        extra = {name: str(value) for name, value in overrides.items()}
        process = start_worker({**worker_env, **(env or {}), **extra}, concurrency=concurrency)
        started.append(process)
        return process

    yield start
    for process in started:
        # SIGKILL: a warm shutdown costs seconds per test, and the next test flushes the broker anyway.
        if process.process is not None and process.process.poll() is None:
            process.kill()
        print("\n".join(["--- worker log ---", *process.lines[-200:]]))


def job_state(job: Job) -> Job:
    job.refresh_from_db()
    return job


def wait_running(job: Job, *, timeout: float = 15) -> Job:
    """Until the job samples on its node (state running, at least one step done)."""
    sampling = Job.objects.filter(id=job.id, state=Job.State.RUNNING, progress_value__gt=0)
    wait_until(sampling.exists, timeout=timeout, what=f"job {job.id} to run")
    return job_state(job)


def sweep_until_finished(jobs: Iterable[Job], *, timeout: float = 30) -> list[Job]:
    """Beat's sweep, called here every half second until every job has ended."""
    from generations.tasks import sweep

    ids = [job.id for job in jobs]
    done = Job.objects.filter(id__in=ids, state__in=Job.FINISHED_STATES)
    last = 0.0

    def finished() -> bool:
        nonlocal last
        if time.monotonic() - last >= 0.5:
            last = time.monotonic()
            sweep()
        return done.count() == len(ids)

    wait_until(finished, timeout=timeout, what=f"{len(ids)} job(s) to finish under sweep")
    return list(Job.objects.filter(id__in=ids).select_related("node"))


def fake_of(job: Job, fakes_by_url: Iterable[FakeComfyUI]) -> FakeComfyUI:
    """The fake ComfyUI a job's node points at."""
    job = Job.objects.select_related("node").get(id=job.id)
    return next(fake for fake in fakes_by_url if fake.url == job.node.base_url)


@contextmanager
def broker_at(url: str, settings) -> Iterator[None]:
    """Point this process's Celery app, Redis clients and settings at another Redis for the block."""
    from comfyrouter import celery_app, redisconn

    def switch(redis_url: str, broker: str) -> None:
        # Not closed: kombu keeps one pool per broker URL and would hand the closed one back later.
        celery_app.conf.broker_url = broker
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        redisconn._clients.clear()
        settings.REDIS_URL = redis_url

    old = (settings.REDIS_URL, celery_app.conf.broker_url)
    switch(url, url.replace("unix://", "redis+socket://", 1))
    try:
        yield
    finally:
        switch(*old)
