"""The engine's fixtures (real worker, fake nodes, built-in endpoints) for the round-trip tests here."""

import pytest

from tests.generations.conftest import (  # noqa: F401
    builtin_endpoints,
    engine_settings,
    fakes,
    worker,
    worker_env,
)
from workflows_app.services import version_params


@pytest.fixture(autouse=True)
def fresh_version_params():
    """Rolled-back tests hand out the same version ids again; the per-process cache must not outlive a test."""
    version_params.cache_clear()
    yield
    version_params.cache_clear()
