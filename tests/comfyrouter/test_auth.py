from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.utils import timezone
from rest_framework.test import APIClient

from comfyrouter.auth import BasicAuthentication, VerifiedPasswords
from comfyrouter.models import ApiKey
from comfyrouter.services import api_key_revoke
from tests.conftest import PASSWORD, basic_auth

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_basic_auth_with_the_right_password_authenticates(api_client):
    response = api_client.get("/api/me")

    assert response.status_code == 200
    assert response.json() == {"username": "alice", "is_staff": False, "auth": "basic", "key_prefix": None}


def test_basic_auth_with_a_wrong_password_is_refused_with_401(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, "wrong"))

    response = client.get("/api/me")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid username/password.", "code": "authentication_failed"}
    assert response.has_header("WWW-Authenticate")


def test_basic_auth_of_an_inactive_user_is_refused(user, api_client):
    user.is_active = False
    user.save()

    assert api_client.get("/api/me").status_code == 401


def test_no_credentials_get_401_with_a_bearer_challenge_not_403(anon_client):
    response = anon_client.get("/api/me")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="ComfyRouter"'
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }


def test_staff_basic_auth_reports_staff(operator_client):
    assert operator_client.get("/api/me").json()["is_staff"] is True


def test_bearer_key_authenticates_as_its_owner(api_key, key_client):
    key, _ = api_key

    response = key_client.get("/api/me")

    assert response.status_code == 200
    me = {"username": "alice", "is_staff": False, "auth": "api_key", "key_prefix": key.prefix}
    assert response.json() == me


def test_bearer_keyword_is_case_insensitive(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {api_key[1]}")

    assert client.get("/api/me").status_code == 200


def test_revoked_key_is_refused_with_a_precise_message(api_key, key_client):
    key, _ = api_key
    api_key_revoke(key=key)

    response = key_client.get("/api/me")

    assert response.status_code == 401
    assert response.json() == {
        "detail": f"API key {key.prefix}… was revoked.",
        "code": "authentication_failed",
    }
    assert response.has_header("WWW-Authenticate")


def test_unknown_key_is_refused(db):
    response = bearer("cr_" + "A" * 43).get("/api/me")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid API key."


def test_key_of_an_inactive_user_is_refused(api_key, key_client, user):
    user.is_active = False
    user.save()

    response = key_client.get("/api/me")

    assert response.status_code == 401
    assert response.json()["detail"] == f"The owner of API key {api_key[0].prefix}… is inactive."


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer two words", b"Bearer \xff\xfe", "Basic not-base64!", "Basic Zm9v"],
    ids=["no-key", "blank-key", "two-words", "non-ascii", "basic-garbage", "basic-without-colon"],
)
def test_malformed_authorization_headers_are_refused_with_401(header, db):
    client = APIClient()
    value = header.decode("latin-1") if isinstance(header, bytes) else header
    client.credentials(HTTP_AUTHORIZATION=value)

    response = client.get("/api/me")

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert response.json()["detail"]


def test_an_unknown_scheme_counts_as_no_credentials(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc")

    response = client.get("/api/me")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_last_used_at_is_recorded_on_first_use(api_key, key_client):
    key, _ = api_key
    assert key.last_used_at is None

    key_client.get("/api/me")

    key.refresh_from_db()
    assert timezone.now() - key.last_used_at < timedelta(seconds=5)


def test_last_used_at_is_written_at_most_once_a_minute(api_key, key_client):
    key, _ = api_key
    recent = timezone.now() - timedelta(seconds=30)
    stale = timezone.now() - timedelta(seconds=90)

    ApiKey.objects.filter(pk=key.pk).update(last_used_at=recent)
    key_client.get("/api/me")
    key.refresh_from_db()
    assert key.last_used_at == recent

    ApiKey.objects.filter(pk=key.pk).update(last_used_at=stale)
    key_client.get("/api/me")
    key.refresh_from_db()
    assert key.last_used_at > recent


def test_admin_session_authenticates_api_calls(operator):
    client = APIClient()
    client.force_login(operator)

    response = client.get("/api/me")

    assert response.status_code == 200
    assert response.json()["auth"] == "session"


def test_session_writes_still_need_the_csrf_token(operator):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username=operator.username, password=PASSWORD)

    response = client.post("/api/me", {})

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


@pytest.fixture
def hashings(monkeypatch) -> list[str]:
    """Passwords the (tests') hasher checked, with an empty cache of verified passwords."""
    checked: list[str] = []
    verify = MD5PasswordHasher.verify
    monkeypatch.setattr(
        MD5PasswordHasher, "verify", lambda self, raw, encoded: checked.append(raw) or verify(self, raw, encoded)
    )
    monkeypatch.setattr(BasicAuthentication, "verified", VerifiedPasswords())
    return checked


def test_a_verified_basic_password_is_not_hashed_again(user, hashings):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, PASSWORD))

    assert [client.get("/api/me").status_code for _ in range(3)] == [200, 200, 200]
    assert hashings == [PASSWORD]


def test_a_changed_password_or_a_deactivated_user_is_refused_at_once(user, hashings):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, PASSWORD))
    assert client.get("/api/me").status_code == 200

    user.set_password("another-long-password")
    user.save()
    assert client.get("/api/me").status_code == 401

    user.set_password(PASSWORD)
    user.is_active = False
    user.save()
    assert client.get("/api/me").status_code == 401


def test_a_wrong_password_is_hashed_every_time(user, hashings):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, "wrong"))

    assert [client.get("/api/me").status_code for _ in range(2)] == [401, 401]
    assert hashings == ["wrong", "wrong"]
