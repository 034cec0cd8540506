"""The engine's fixtures (real worker, fake nodes, built-in endpoints) for the round-trip tests here."""

from tests.generations.conftest import (  # noqa: F401
    builtin_endpoints,
    engine_settings,
    fakes,
    worker,
    worker_env,
)
