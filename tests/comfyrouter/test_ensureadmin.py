from __future__ import annotations

import io
import re
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def admin_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.COMFYROUTER_ADMIN_USERNAME = "admin"
    settings.COMFYROUTER_ADMIN_PASSWORD = ""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


def ensureadmin() -> str:
    out = io.StringIO()
    call_command("ensureadmin", stdout=out)
    return out.getvalue()


def admin():
    return get_user_model().objects.get(username="admin")


def test_it_generates_prints_and_stores_a_password_once(tmp_path):
    first = ensureadmin()

    password = re.search(r"password: (\S+) \(stored in (\S+)\)", first).group(1)
    stored = tmp_path / "admin_password"
    assert stored.read_text().strip() == password
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert admin().check_password(password)
    assert admin().is_superuser and admin().is_staff
    assert ensureadmin() == ""
    assert admin().check_password(password)


def test_it_reuses_the_stored_password_without_printing_it_again(tmp_path):
    (tmp_path / "admin_password").write_text("kept-from-before\n")

    output = ensureadmin()

    assert "kept-from-before" not in output and "created" in output
    assert admin().check_password("kept-from-before")


def test_it_honours_the_env_password_and_updates_it_when_it_changes(admin_settings, tmp_path):
    admin_settings.COMFYROUTER_ADMIN_PASSWORD = "first secret"
    ensureadmin()
    assert admin().check_password("first secret")
    assert not (tmp_path / "admin_password").exists()

    assert ensureadmin() == ""
    admin_settings.COMFYROUTER_ADMIN_PASSWORD = "second secret"
    output = ensureadmin()

    assert "second secret" not in output
    assert admin().check_password("second secret")


def test_it_restores_admin_rights_of_an_existing_user():
    get_user_model().objects.create_user("admin", password="old", is_staff=False)

    assert ensureadmin() == ""

    assert admin().is_superuser and admin().is_staff and admin().check_password("old")
