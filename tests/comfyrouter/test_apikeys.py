from __future__ import annotations

import hashlib
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from comfyrouter.models import ApiKey
from comfyrouter.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db

RAW_KEY = re.compile(r"cr_[A-Za-z0-9_-]{43}")


def authenticates(raw: str) -> str | None:
    """The username the key authenticates as, or None."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.get("/api/me")
    return response.json()["username"] if response.status_code == 200 else None


def admin_client(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def test_api_key_create_stores_only_a_hash_and_a_display_prefix(user):
    key, raw = api_key_create(owner=user, name="ci")

    assert RAW_KEY.fullmatch(raw)
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert key.prefix == raw[:12] and str(key).startswith(key.prefix)
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert raw not in {str(value) for value in stored.values()}
    assert (key.owner, key.name, key.revoked_at, key.last_used_at) == (user, "ci", None, None)


def test_each_new_key_is_different(user):
    assert api_key_create(owner=user, name="a")[1] != api_key_create(owner=user, name="a")[1]


def test_api_key_revoke_keeps_the_first_revocation_date(api_key):
    key, raw = api_key

    first = api_key_revoke(key=key).revoked_at
    again = api_key_revoke(key=ApiKey.objects.get(pk=key.pk)).revoked_at

    assert first is not None and again == first
    assert not key.is_active
    assert authenticates(raw) is None


def test_revoking_one_key_leaves_the_owners_other_keys_working(user):
    first, _ = api_key_create(owner=user, name="old")
    _, raw = api_key_create(owner=user, name="new")

    api_key_revoke(key=first)

    assert authenticates(raw) == "alice"


def test_admin_shows_a_new_key_once_then_never_again(operator, user):
    client = admin_client(operator)

    response = client.post("/admin/comfyrouter/apikey/add/", {"owner": user.pk, "name": "ci"}, follow=True)

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if RAW_KEY.search(str(m))]
    assert len(shown) == 1 and "not shown again" in shown[0]
    raw = RAW_KEY.search(shown[0]).group()
    assert authenticates(raw) == "alice"
    key = ApiKey.objects.get(name="ci")
    for url in (f"/admin/comfyrouter/apikey/{key.pk}/change/", "/admin/comfyrouter/apikey/"):
        page = client.get(url).content.decode()
        assert key.prefix in page
        assert raw not in page and key.key_hash not in page


def test_admin_add_form_asks_only_for_owner_and_name(operator):
    response = admin_client(operator).get("/admin/comfyrouter/apikey/add/")

    fields = set(response.context["adminform"].form.fields)
    assert fields == {"owner", "name"}


def test_admin_change_form_edits_only_the_name(operator, api_key):
    key, _ = api_key
    client = admin_client(operator)

    response = client.get(f"/admin/comfyrouter/apikey/{key.pk}/change/")
    assert set(response.context["adminform"].form.fields) == {"name"}

    client.post(f"/admin/comfyrouter/apikey/{key.pk}/change/", {"name": "renamed"})
    key.refresh_from_db()
    assert key.name == "renamed"


def test_admin_add_form_refuses_an_inactive_owner(operator, user):
    user.is_active = False
    user.save()

    response = admin_client(operator).post("/admin/comfyrouter/apikey/add/", {"owner": user.pk, "name": "x"})

    assert response.status_code == 200
    assert "owner" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_admin_revoke_action_revokes_the_selected_keys(operator, api_key):
    key, raw = api_key

    admin_client(operator).post(
        "/admin/comfyrouter/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert authenticates(raw) is None


def test_createapikey_prints_only_a_key_that_authenticates(user):
    out, err = StringIO(), StringIO()

    call_command("createapikey", "alice", "--name", "nightly", stdout=out, stderr=err)

    raw = out.getvalue().strip()
    assert RAW_KEY.fullmatch(raw), out.getvalue()
    assert raw not in err.getvalue()
    assert authenticates(raw) == "alice"
    assert ApiKey.objects.get().name == "nightly"


def test_createapikey_for_an_unknown_user_fails_clearly(db):
    with pytest.raises(CommandError, match="User 'nosuchuser' does not exist."):
        call_command("createapikey", "nosuchuser", stdout=StringIO(), stderr=StringIO())

    assert not ApiKey.objects.exists()


def test_createapikey_for_an_inactive_user_fails_clearly(user):
    user.is_active = False
    user.save()

    with pytest.raises(CommandError, match="'alice' is inactive"):
        call_command("createapikey", "alice", stdout=StringIO(), stderr=StringIO())
