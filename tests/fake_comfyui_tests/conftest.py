"""Fixtures for the fake's conformance suite: no Django database, no Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_comfyui import FakeComfyUI


@pytest.fixture(scope="session", autouse=True)
def redis_server() -> Iterator[None]:
    """Shadows the project-wide Redis fixture: the fake needs none."""
    yield None


@pytest.fixture
def fake() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(step_time=0.005).start() as server:
        yield server
