"""Writes with rules: creating and revoking API keys."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from .models import ApiKey


def api_key_create(*, owner: AbstractBaseUser, name: str = "") -> tuple[ApiKey, str]:
    """Create a key for `owner`; returns it with the raw key, which is never stored."""
    raw, prefix, key_hash = ApiKey.generate()
    key = ApiKey.objects.create(owner=owner, name=name, prefix=prefix, key_hash=key_hash)
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke `key` from now on; revoking an already revoked key keeps its first date."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db(fields=["revoked_at"])
    return key
