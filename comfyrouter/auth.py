"""DRF authentication: API keys as `Authorization: Bearer <key>` and HTTP Basic."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiKey, hash_key
from .prepared import Prepared

# Touching last_used_at on every request would be a write per call; once a minute is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# How long a verified Basic password is taken without hashing it again, and how many are kept.
VERIFIED_SECONDS = 300
VERIFIED_MAX = 1024
# Every API call's first read (compiled once: comfyrouter.prepared). key_hash is unique.
KEY_BY_HASH = Prepared(lambda key_hash: ApiKey.objects.select_related("owner").filter(key_hash=key_hash))


class VerifiedPasswords:
    """Passwords checked recently, as HMACs of (user, current password hash, password): never in clear."""

    def __init__(self) -> None:
        self.until: OrderedDict[bytes, float] = OrderedDict()
        self.lock = threading.Lock()

    def holds(self, user: AbstractBaseUser, password: str) -> bool:
        token = self._token(user, password)
        with self.lock:
            expiry = self.until.get(token)
            if expiry is None or expiry < time.monotonic():
                return False
            self.until.move_to_end(token)
            return True

    def add(self, user: AbstractBaseUser, password: str) -> None:
        token = self._token(user, password)
        with self.lock:
            self.until[token] = time.monotonic() + VERIFIED_SECONDS
            self.until.move_to_end(token)
            while len(self.until) > VERIFIED_MAX:
                self.until.popitem(last=False)

    @staticmethod
    def _token(user: AbstractBaseUser, password: str) -> bytes:
        message = f"{user.pk}\0{user.password}\0{password}".encode()
        return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()


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
        try:
            key = KEY_BY_HASH.get(key_hash=hash_key(raw))
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
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
    """HTTP Basic against Django users, without hashing the password on every request.

    Checking a password costs Django's PBKDF2 (1,000,000 rounds: about 250 ms of CPU), and Basic sends
    it with every request. A verified password is remembered for a few minutes as an HMAC bound to the
    user's current password hash: a changed password, or a deactivated user, is refused at once.
    """

    www_authenticate_realm = "ComfyRouter"
    verified = VerifiedPasswords()

    def authenticate_credentials(self, userid, password, request=None):
        users = get_user_model()
        user = users._default_manager.filter(**{users.USERNAME_FIELD: userid}).first()
        if user is not None and user.is_active and self.verified.holds(user, password):
            return user, None
        user, _ = super().authenticate_credentials(userid, password, request)
        self.verified.add(user, password)
        return user, None


def api_key_of(request) -> ApiKey | None:
    """The API key a request authenticated with, or None (Basic auth, a session)."""
    return request.auth if isinstance(request.auth, ApiKey) else None
