"""DRF authentication: API keys as `Authorization: Bearer <key>` and HTTP Basic."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiKey, hash_key

# Touching last_used_at on every request would be a write per call; once a minute is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`, as the openai SDK sends it.

    First in DEFAULT_AUTHENTICATION_CLASSES: DRF takes the challenge of the first class, and
    a class with a challenge turns "not authenticated" into 401 rather than 403.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <key>'.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key: it contains non-ASCII bytes.") from None
        return self.authenticate_key(raw)

    def authenticate_key(self, raw: str) -> tuple[AbstractBaseUser, ApiKey]:
        key = ApiKey.objects.select_related("owner").filter(key_hash=hash_key(raw)).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed(f"API key {key.prefix}… was revoked.")
        if not key.owner.is_active:
            raise exceptions.AuthenticationFailed(f"The owner of API key {key.prefix}… is inactive.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key.owner, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ComfyRouter"'


class BasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic against Django users."""

    www_authenticate_realm = "ComfyRouter"


def api_key_of(request) -> ApiKey | None:
    """The API key a request authenticated with, or None (Basic auth, a session)."""
    return request.auth if isinstance(request.auth, ApiKey) else None
