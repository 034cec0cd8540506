"""The settings helpers, and the settings module read afresh under a given environment."""

from __future__ import annotations

import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured

from comfyrouter import settings as live_settings
from comfyrouter.settings import env_bool, env_int, env_list, env_str

VAR = "COMFYROUTER_TEST_VALUE"


@pytest.fixture
def fresh_settings(monkeypatch, tmp_path):
    """Run comfyrouter/settings.py again with extra environment; the live settings are untouched."""

    def load(**env: str) -> dict:
        for name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("SECRET_KEY", "test-secret")
        monkeypatch.setenv("COMFYROUTER_VAR_DIR", str(tmp_path))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(live_settings.__file__)

    return load


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " On "])
def test_env_bool_reads_true_values(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off"])
def test_env_bool_reads_false_values(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, True) is False


@pytest.mark.parametrize("raw", [None, ""])
def test_env_bool_falls_back_to_the_default_when_unset_or_empty(monkeypatch, raw):
    monkeypatch.delenv(VAR, raising=False)
    if raw is not None:
        monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, True) is True and env_bool(VAR) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled"])
def test_env_bool_refuses_other_values_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='{raw}' is not a boolean"):
        env_bool(VAR)


def test_env_int_reads_integers_and_defaults(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    assert env_int(VAR, 7) == 7
    monkeypatch.setenv(VAR, "42")
    assert env_int(VAR, 7) == 42
    monkeypatch.setenv(VAR, "")
    assert env_int(VAR, 7) == 7


@pytest.mark.parametrize("raw", ["abc", "1.5", "10k", "0x10"])
def test_env_int_refuses_non_integers_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='{raw}' is not an integer"):
        env_int(VAR, 1)


def test_env_int_refuses_values_below_the_minimum(monkeypatch):
    monkeypatch.setenv(VAR, "0")
    with pytest.raises(ImproperlyConfigured, match=f"{VAR}=0 is below its minimum of 1"):
        env_int(VAR, 5, minimum=1)


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv(VAR, " a.example, b.example ,,c ")
    assert env_list(VAR) == ["a.example", "b.example", "c"]


def test_env_list_and_env_str_fall_back_to_their_defaults(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    assert env_list(VAR, "x,y") == ["x", "y"]
    assert env_list(VAR) == []
    assert env_str(VAR, "d") == "d"


def test_database_url_selects_postgresql(fresh_settings):
    settings = fresh_settings(DATABASE_URL="postgres://router:s3cret@db.internal:6543/comfyrouter")

    db = settings["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"]) == ("comfyrouter", "router", "s3cret")
    assert (db["HOST"], db["PORT"]) == ("db.internal", 6543)
    assert db["CONN_MAX_AGE"] == 60


def test_without_database_url_the_embedded_sqlite_file_is_used(fresh_settings, tmp_path):
    settings = fresh_settings()

    db = settings["DATABASES"]["default"]
    assert db["ENGINE"] == "comfyrouter.sqlite"
    assert str(db["NAME"]) == str(tmp_path / "db.sqlite3")
    assert settings["EMBEDDED_REDIS"] is True


def test_a_bad_variable_stops_startup_naming_it(fresh_settings):
    with pytest.raises(ImproperlyConfigured, match="COMFYROUTER_MAX_BODY_BYTES='lots' is not an integer"):
        fresh_settings(COMFYROUTER_MAX_BODY_BYTES="lots")


def test_the_body_limit_comes_from_its_variable(fresh_settings):
    assert fresh_settings(COMFYROUTER_MAX_BODY_BYTES="4096")["DATA_UPLOAD_MAX_MEMORY_SIZE"] == 4096
