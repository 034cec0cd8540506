"""Shared fixtures: the Redis the settings name, and the named actors of the tests."""

from __future__ import annotations

import base64
import time

import pytest
from django.conf import settings
from django.db import OperationalError
from django.db.backends.base.operations import BaseDatabaseOperations
from rest_framework.test import APIClient

from comfyrouter import embedded_redis
from comfyrouter.services import api_key_create


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """REDIS_URL when given (CI: a real server); otherwise the embedded one, started here."""
    if not settings.EMBEDDED_REDIS or embedded_redis.is_up(settings.REDIS_URL):
        yield settings.REDIS_URL
        return
    process = embedded_redis.start(settings.REDIS_URL)
    try:
        yield settings.REDIS_URL
    finally:
        embedded_redis.stop(process)


@pytest.fixture(scope="session", autouse=True)
def flush_survives_stragglers():
    """Retry the between-tests TRUNCATE when PostgreSQL picks it as a deadlock victim.

    The session-wide Daphne and worker of the API tests may still be closing a job's transaction
    when a test ends; the TRUNCATE that empties the database then deadlocks with it, and PostgreSQL
    aborts the TRUNCATE. The other transaction finishes within milliseconds, so trying again is right.
    """
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        for attempt in range(10):
            try:
                return original(self, sql_list)
            except OperationalError as error:
                if "deadlock" not in str(error) or attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseDatabaseOperations, "execute_sql_flush", execute_sql_flush)
        yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, and before it is dropped, the sessions still open on it closed.

    A thread that ends without closing its connection (asyncio.to_thread, an event loop's executor)
    leaves it open: connections live on for CONN_MAX_AGE. PostgreSQL refuses to drop a database that
    has sessions, and the test database would outlive the run.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


PASSWORD = "correct horse battery staple"


@pytest.fixture
def operator(django_user_model):
    """A staff user: runs the fleet, uses the admin."""
    return django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def user(django_user_model):
    """An API consumer without staff rights."""
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def other_user(django_user_model):
    """Another consumer, who must see nothing of alice's."""
    return django_user_model.objects.create_user("mallory", password=PASSWORD)


@pytest.fixture
def api_client(user) -> APIClient:
    """alice's client with HTTP Basic credentials."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, PASSWORD))
    return client


@pytest.fixture
def operator_client(operator) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(operator.username, PASSWORD))
    return client


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def api_key(user):
    """alice's API key: (ApiKey, raw key). The raw key exists only here, as in real use."""
    return api_key_create(owner=user, name="tests")


@pytest.fixture
def key_client(api_key) -> APIClient:
    """alice's client sending her API key as `Authorization: Bearer`, like the openai SDK."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")
    return client


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """MD5 for passwords made in tests: PBKDF2 costs ~0.3 s per hash and per Basic-auth request.

    The real hashers stay listed, so hashes made elsewhere still verify.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture
def fake_comfy():
    """A protocol-faithful fake ComfyUI on a free 127.0.0.1 port."""
    from tests.fake_comfyui import FakeComfyUI

    with FakeComfyUI(port=0) as fake:
        yield fake


@pytest.fixture
def node(db, fake_comfy):
    """A node registered against `fake_comfy` (checked once at registration: idle, models known)."""
    from nodes.services import node_create

    return node_create(name="fake-1", base_url=fake_comfy.url)


@pytest.fixture(autouse=True)
def fresh_version_caches():
    """Rolled-back tests hand out the same version ids again; per-process caches must not outlive a test."""
    from workflows_app import services

    caches = (services.version_graph, services.version_params, services._cache_graphs)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()
