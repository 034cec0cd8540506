"""Webhooks: a finished job's JSON POSTed to its webhook_url, signed, retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from typing import Any

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from generations.models import Job

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ComfyRouter-Signature"
MAX_BACKOFF_SECONDS = 600


def signing_secret(job: Job) -> str:
    """Per API key: the hex SHA-256 of the key, which its holder can derive and we store anyway.

    Jobs submitted with a password are signed with the server-wide COMFYROUTER_WEBHOOK_SECRET.
    """
    if job.api_key is not None:
        return job.api_key.key_hash
    return settings.COMFYROUTER_WEBHOOK_SECRET


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(job: Job) -> dict[str, Any]:
    from generations.serializers import job_json

    return {"event": "job.finished", "job": job_json(job)}


def deliver(job_id: Any) -> float | None:
    """Try one delivery; returns the delay before the next try, or None when done or given up."""
    job = Job.objects.select_related("api_key", "endpoint").get(id=job_id)
    if not job.webhook_url or job.webhook_delivered_at is not None:
        return None
    body = json.dumps(payload(job), cls=DjangoJSONEncoder).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, signing_secret(job)),
               "X-ComfyRouter-Delivery": uuid.uuid4().hex, "User-Agent": "ComfyRouter-Webhook/1"}  # fmt: skip
    error = _post(job.webhook_url, body, headers)
    attempts = job.webhook_attempts + 1
    Job.objects.filter(id=job.id).update(
        webhook_attempts=attempts, webhook_error=error,
        webhook_delivered_at=None if error else timezone.now(),
    )  # fmt: skip
    if not error:
        return None
    if attempts >= settings.COMFYROUTER_WEBHOOK_MAX_ATTEMPTS:
        log.warning("webhook of job %s abandoned after %d attempts: %s", job.id, attempts, error)
        return None
    return min(2.0**attempts, MAX_BACKOFF_SECONDS)


def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
    """POST once; an empty string on a 2xx, else what went wrong."""
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=10, follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return ""
    return f"HTTP {response.status_code} from {url}"
