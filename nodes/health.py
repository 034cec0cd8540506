"""Health probes of one ComfyUI node: client calls only, no database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.utils import timezone

from nodes.comfy import (
    ComfyClient,
    ComfyRejected,
    ComfyTimeout,
    ComfyUnauthorized,
    ComfyUnavailable,
    Queue,
    SystemStats,
)
from nodes.models import Node

# A hanging node must not hold up the checks of the others: every call of a check is bounded by this.
CHECK_TIMEOUT = 3.0
# The model lists change when files are copied in; object_info (~500 KB) only when the node restarts.
MODELS_MAX_AGE = timedelta(seconds=60)
OBJECT_INFO_MAX_AGE = timedelta(minutes=10)
MODEL_FOLDERS = (
    "checkpoints",
    "loras",
    "vae",
    "diffusion_models",
    "text_encoders",
    "clip_vision",
    "controlnet",
    "upscale_models",
)
# A different version means the server was restarted (and maybe its custom nodes changed).
_RESTART_SIGNS = ("comfyui_version", "python_version", "pytorch_version")


class ProbeFailed(Exception):
    """The node could not be checked; the message says why, for an operator."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind  # "unreachable" | "credentials" | "not_comfyui"


@dataclass(frozen=True)
class Refresh:
    models: bool
    object_info: bool


@dataclass(frozen=True)
class NodeHealth:
    """One successful probe; `models` / `object_info_hash` are None when not fetched this time."""

    stats: SystemStats
    queue_running: int
    queue_pending: int
    checked_at: datetime
    models: dict[str, list[str]] | None = None
    object_info_hash: str | None = None
    object_info_classes: int | None = None

    @property
    def busy(self) -> bool:
        return self.queue_running + self.queue_pending > 0

    def as_json(self, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `Node.health` document: this probe, plus the inventory of `previous` not refetched."""
        doc = {k: v for k, v in (previous or {}).items() if k in _INVENTORY_KEYS}
        doc.update(_stats_json(self.stats))
        doc.update(
            queue_running=self.queue_running,
            queue_pending=self.queue_pending,
            queue_remaining=self.queue_running + self.queue_pending,
        )
        stamp = self.checked_at.isoformat()
        if self.models is not None:
            doc.update(models=self.models, models_checked_at=stamp)
        if self.object_info_hash is not None:
            doc.update(
                object_info_hash=self.object_info_hash,
                object_info_classes=self.object_info_classes,
                object_info_checked_at=stamp,
            )
        return doc


_INVENTORY_KEYS = frozenset(
    {"models", "models_checked_at", "object_info_hash", "object_info_classes", "object_info_checked_at"}
)


def client_for(node: Node, *, timeout: float = CHECK_TIMEOUT) -> ComfyClient:
    """A client for `node` that sends its credentials."""
    return ComfyClient(node.base_url, timeout=timeout, headers=node.request_headers())


def probe_node(node: Node, *, previous: Mapping[str, Any] | None = None) -> NodeHealth:
    """Probe `node` (saved or not) with its credentials; raises ProbeFailed."""
    with client_for(node) as client:
        return probe(client, previous=previous)


def probe(client: ComfyClient, *, previous: Mapping[str, Any] | None = None) -> NodeHealth:
    """/system_stats and /queue, plus models and object_info when `refresh_due`; raises ProbeFailed."""
    now = timezone.now()
    try:
        stats = _checked_stats(client)
        queue = _checked_queue(client)
        due = refresh_due(previous, stats=stats, now=now)
        models = _models(client) if due.models else None
        info = client.object_info() if due.object_info else None
    except ProbeFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a probe is reported, never raised raw
        raise describe_failure(exc, client.base_url) from exc
    return NodeHealth(
        stats=stats,
        queue_running=len(queue.running),
        queue_pending=len(queue.pending),
        checked_at=now,
        models=models,
        object_info_hash=None if info is None else object_info_hash(info),
        object_info_classes=None if info is None else len(info),
    )


def refresh_due(previous: Mapping[str, Any] | None, *, stats: SystemStats, now: datetime) -> Refresh:
    """Which slow parts to refetch: all of them for a new, returning or restarted node, else by age."""
    if not previous or any(previous.get(key) != getattr(stats, key) for key in _RESTART_SIGNS):
        return Refresh(models=True, object_info=True)
    return Refresh(
        models=_older_than(previous.get("models_checked_at"), MODELS_MAX_AGE, now),
        object_info=_older_than(previous.get("object_info_checked_at"), OBJECT_INFO_MAX_AGE, now),
    )


def object_info_hash(info: Mapping[str, Any]) -> str:
    """sha256 of object_info in canonical JSON (key order does not count)."""
    # The client returns the parsed body, not its bytes; canonical JSON is as good a change detector.
    canonical = json.dumps(info, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe_failure(exc: BaseException, base_url: str) -> ProbeFailed:
    """An operator's sentence for what went wrong talking to the node."""
    if isinstance(exc, ComfyUnauthorized):
        return ProbeFailed(
            f"the node refused our credentials ({exc.status_code} from {base_url}): "
            "check its auth token and extra headers",
            kind="credentials",
        )
    if isinstance(exc, ComfyRejected):
        return _not_comfyui(base_url, f"it answered {exc.message}")
    if isinstance(exc, ComfyTimeout):
        return ProbeFailed(f"{base_url} did not answer within {CHECK_TIMEOUT:g} s", kind="unreachable")
    cause = exc.__cause__
    if isinstance(exc, ComfyUnavailable) and isinstance(cause, httpx.ConnectError):
        return ProbeFailed(f"could not connect to {base_url}: {_reason(cause)}", kind="unreachable")
    if isinstance(exc, ComfyUnavailable) and isinstance(cause, ValueError):
        return _not_comfyui(base_url, "its answer is not JSON")
    if isinstance(exc, ComfyUnavailable):
        return ProbeFailed(str(exc), kind="unreachable")
    return _not_comfyui(base_url, f"unexpected answer ({type(exc).__name__}: {exc})")


def _checked_stats(client: ComfyClient) -> SystemStats:
    try:
        stats = client.system_stats()
    except (AttributeError, TypeError, KeyError) as exc:
        raise _not_comfyui(client.base_url, "/system_stats has no `system` object") from exc
    if not isinstance(stats.comfyui_version, str) or not stats.comfyui_version:
        raise _not_comfyui(client.base_url, "/system_stats has no system.comfyui_version")
    return stats


def _checked_queue(client: ComfyClient) -> Queue:
    try:
        return client.queue()
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise _not_comfyui(client.base_url, "/queue is not a ComfyUI queue") from exc


def _models(client: ComfyClient) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in MODEL_FOLDERS:
        try:
            files = client.models(folder)
        except ComfyRejected as exc:
            if isinstance(exc, ComfyUnauthorized):
                raise
            continue  # 404: this ComfyUI has no such folder (older names: unet, clip)
        found[folder] = sorted(str(name) for name in files)
    return found


def _stats_json(stats: SystemStats) -> dict[str, Any]:
    devices = [
        {"name": d.name, "type": d.type, "vram_total": d.vram_total, "vram_free": d.vram_free}
        for d in stats.devices
    ]
    gpu = next((d for d in devices if d["type"] != "cpu"), devices[0] if devices else None)
    return {
        "comfyui_version": stats.comfyui_version,
        "python_version": stats.python_version,
        "pytorch_version": stats.pytorch_version,
        "ram_total": stats.ram_total,
        "ram_free": stats.ram_free,
        "gpu": gpu["name"] if gpu else "",
        "vram_total": gpu["vram_total"] if gpu else 0,
        "vram_free": gpu["vram_free"] if gpu else 0,
        "devices": devices,
    }


def _older_than(stamp: object, age: timedelta, now: datetime) -> bool:
    try:
        return now - datetime.fromisoformat(str(stamp)) >= age
    except (TypeError, ValueError):
        return True


def _not_comfyui(base_url: str, why: str) -> ProbeFailed:
    return ProbeFailed(f"{base_url} is not a ComfyUI server: {why}", kind="not_comfyui")


def _reason(exc: httpx.ConnectError) -> str:
    # "[Errno 111] Connection refused" -> "connection refused"
    text = str(exc).rsplit("] ", 1)[-1] or type(exc).__name__
    return text[:1].lower() + text[1:]
