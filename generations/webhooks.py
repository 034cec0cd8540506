"""Webhooks: a finished job's JSON POSTed to its webhook_url, signed, retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from generations.downloads import DownloadRefused, check_url
from generations.models import Job

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ComfyRouter-Signature"
MAX_BACKOFF_SECONDS = 600
LEASE_SECONDS = 60


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


def due(limit: int = 500) -> list[Any]:
    """Jobs whose webhook delivery is due: a first try that never ran, or a retry whose backoff passed."""
    pending = Job.objects.filter(webhook_next_at__lte=timezone.now(), webhook_delivered_at__isnull=True)
    return list(pending.order_by("webhook_next_at").values_list("id", flat=True)[:limit])


def deliver(job_id: Any) -> None:
    """Try one delivery if it is due, then schedule the next try or stop (delivered or given up)."""
    now = timezone.now()
    # Claiming the try pushes its due time past a lease: two workers never post the same try twice,
    # and a worker that dies mid-try leaves it due again for the sweep.
    claimed = Job.objects.filter(id=job_id, webhook_delivered_at__isnull=True, webhook_next_at__lte=now).update(
        webhook_next_at=now + timedelta(seconds=LEASE_SECONDS)
    )
    if not claimed:
        return
    job = Job.objects.select_related("api_key", "endpoint").get(id=job_id)
    body = json.dumps(payload(job), cls=DjangoJSONEncoder).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, signing_secret(job)),
               "X-ComfyRouter-Delivery": uuid.uuid4().hex, "User-Agent": "ComfyRouter-Webhook/1"}  # fmt: skip
    error, final = _post(job.webhook_url, body, headers)
    attempts = job.webhook_attempts + 1
    if error and (final or attempts >= settings.COMFYROUTER_WEBHOOK_MAX_ATTEMPTS):
        log.warning("webhook of job %s abandoned after %d attempt(s): %s", job.id, attempts, error)
    retry_at = None if not error or final or attempts >= settings.COMFYROUTER_WEBHOOK_MAX_ATTEMPTS else (
        timezone.now() + timedelta(seconds=backoff(attempts))
    )  # fmt: skip
    Job.objects.filter(id=job.id).update(
        webhook_attempts=attempts, webhook_error=error, webhook_next_at=retry_at,
        webhook_delivered_at=None if error else timezone.now(),
    )  # fmt: skip


def backoff(attempts: int) -> float:
    return min(settings.COMFYROUTER_WEBHOOK_BACKOFF * 2.0 ** (attempts - 1), MAX_BACKOFF_SECONDS)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, bool]:
    """POST once to the checked address; ("", _) on a 2xx, else (what went wrong, whether retrying is futile)."""
    try:
        target = check_url(url)
    except DownloadRefused as exc:
        return f"webhook URL refused: {exc}", True
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    # Sent to the address that was checked, not to a fresh DNS answer (no rebinding past the check).
    request_headers = {**headers, "Host": target.host_header}
    try:
        with httpx.Client(timeout=10, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", target.url_for(target.addresses[0]), content=body, headers=request_headers,
                extensions=extensions,
            )  # fmt: skip
            response = client.send(request)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}", False
    if 200 <= response.status_code < 300:
        return "", False
    return f"HTTP {response.status_code} from {url}", False
