"""Writes on nodes: registration, settings, health results, drain, resume and removal."""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from comfyrouter import realtime
from nodes.health import NodeHealth, ProbeFailed, probe_node
from nodes.models import Node
from nodes.signals import node_ready

logger = logging.getLogger(__name__)

Status = Node.Status
CONNECTION_FIELDS = frozenset({"base_url", "auth_token", "extra_headers"})
EDITABLE_FIELDS = CONNECTION_FIELDS | {"name", "capacity", "enabled"}
MAX_PARALLEL_CHECKS = 32


class NodeError(Exception):
    """An operation on a node was refused; the message is for the operator."""


class NodeCheckFailed(NodeError):
    """The node is unreachable, not a ComfyUI, or refuses our credentials."""

    def __init__(self, failure: ProbeFailed) -> None:
        super().__init__(failure.message)
        self.kind = failure.kind


class NodeBusy(NodeError):
    """The node still holds jobs."""


def node_verify(*, node: Node) -> NodeHealth:
    """Probe a saved or unsaved node in full; raises NodeCheckFailed with the reason."""
    try:
        return probe_node(node)
    except ProbeFailed as exc:
        raise NodeCheckFailed(exc) from exc


def node_create(
    *,
    name: str,
    base_url: str,
    capacity: int = 2,
    auth_token: str = "",
    extra_headers: dict[str, str] | None = None,
) -> Node:
    """Register a node once it has answered as a ComfyUI that accepts our credentials."""
    node = Node(
        name=name,
        base_url=base_url,
        capacity=capacity,
        auth_token=auth_token,
        extra_headers=extra_headers or {},
    )
    health = node_verify(node=node)
    node.save()
    return node_record_health(node=node, health=health)


def node_update(*, node: Node, **fields: Any) -> Node:
    """Change a node's settings; a new address or new credentials are checked before they are saved."""
    unknown = fields.keys() - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"not editable: {', '.join(sorted(unknown))}")
    changed = {name: value for name, value in fields.items() if getattr(node, name) != value}
    candidate = copy.copy(node)
    for name, value in changed.items():
        setattr(candidate, name, value)
    health = node_verify(node=candidate) if changed.keys() & CONNECTION_FIELDS else None
    # Only the edited columns: `running` and `status` belong to the dispatcher and the health checks.
    if changed:
        candidate.save(update_fields=list(changed))
        if changed.get("enabled") or changed.get("capacity", 0) > node.capacity:
            _announce_ready(candidate)
    if health is not None:
        candidate.health = {}  # another address: the old inventory is not this server's
        return node_record_health(node=candidate, health=health)
    return candidate


def node_check(*, node: Node, full: bool = False) -> Node:
    """Check the node now and record the result (`full`: refetch its models and object_info too)."""
    return _record(node, _probe(node, full=full))


def node_check_all() -> list[Node]:
    """Check every enabled node in parallel; a slow or hanging node delays only its own result."""
    nodes = list(Node.objects.filter(enabled=True))
    if not nodes:
        return []
    checked = []
    with ThreadPoolExecutor(max_workers=min(len(nodes), MAX_PARALLEL_CHECKS)) as pool:
        futures = {pool.submit(_probe, node): node for node in nodes}
        # Probes run in threads (no database); results are written here, one at a time, as they come.
        for future in as_completed(futures):
            try:
                checked.append(_record(futures[future], future.result()))
            except Node.DoesNotExist:
                continue  # removed while it was being checked
    return checked


def node_record_health(*, node: Node, health: NodeHealth) -> Node:
    """Store a successful check: the health document, no failures, and idle or busy unless draining."""
    now = timezone.now()
    Node.objects.filter(id=node.id).update(
        health=health.as_json(previous=node.health if isinstance(node.health, dict) else None),
        consecutive_failures=0,
        last_error="",
        last_checked_at=now,
        last_seen_at=now,
    )
    node.refresh_from_db()
    busy = health.busy or node.running > 0
    _change_status(
        node, Status.BUSY if busy else Status.IDLE, only_from={Status.IDLE, Status.BUSY, Status.OFFLINE}
    )
    return node


def node_record_failure(*, node: Node, error: str) -> Node:
    """Store a failed check; after COMFYROUTER_OFFLINE_AFTER failures in a row the node goes offline."""
    Node.objects.filter(id=node.id).update(
        consecutive_failures=F("consecutive_failures") + 1, last_error=error, last_checked_at=timezone.now()
    )
    node.refresh_from_db()
    if node.consecutive_failures >= settings.COMFYROUTER_OFFLINE_AFTER:
        _change_status(node, Status.OFFLINE, only_from={Status.IDLE, Status.BUSY})
    return node


def node_mark_lost(*, node: Node, error: str) -> Node:
    """A worker lost the node mid-job: offline at once, until a health check succeeds again."""
    Node.objects.filter(id=node.id).update(
        consecutive_failures=Greatest(F("consecutive_failures"), settings.COMFYROUTER_OFFLINE_AFTER),
        last_error=error[:2000],
        last_checked_at=timezone.now(),
    )
    node.refresh_from_db()
    _change_status(node, Status.OFFLINE, only_from={Status.IDLE, Status.BUSY})
    return node


def node_drain(*, node: Node) -> Node:
    """Give the node no new job; the jobs it holds finish."""
    _change_status(node, Status.DRAINING)
    return node


def node_resume(*, node: Node) -> Node:
    """Let a drained node take jobs again (offline while its checks fail)."""
    node.refresh_from_db()
    health = node.health if isinstance(node.health, dict) else {}
    if node.last_seen_at is None or node.consecutive_failures >= settings.COMFYROUTER_OFFLINE_AFTER:
        target = Status.OFFLINE
    elif node.running > 0 or health.get("queue_remaining"):
        target = Status.BUSY
    else:
        target = Status.IDLE
    _change_status(node, target, only_from={Status.DRAINING})
    return node


def node_delete(*, node: Node) -> None:
    """Remove a node that holds no job (drain it first and let its jobs finish)."""
    # Conditional delete: a slot claimed meanwhile keeps the node.
    deleted, _ = Node.objects.filter(id=node.id, running=0).delete()
    if not deleted and Node.objects.filter(id=node.id).exists():
        node.refresh_from_db()
        raise NodeBusy(
            f"node {node.name} still holds {node.running} job(s): drain it, and remove it once they are done"
        )


def _change_status(node: Node, status: str, *, only_from: Collection[str] | None = None) -> bool:
    """The one place a node's status changes, under a row lock; every change is logged here."""
    with transaction.atomic():
        old = Node.objects.select_for_update().values_list("status", flat=True).get(id=node.id)
        if old == status or (only_from is not None and old not in only_from):
            node.status = old
            return False
        Node.objects.filter(id=node.id).update(status=status)
    node.status = status
    logger.info("node %s: %s -> %s", node.name, old, status)
    event = {"type": "node.status", "node_id": node.id, "name": node.name, "status": status, "old": old}
    transaction.on_commit(lambda: realtime.publish(realtime.NODES_GROUP, event))
    if status in Node.ACCEPTING and old not in Node.ACCEPTING:
        _announce_ready(node)
    return True


def _announce_ready(node: Node) -> None:
    transaction.on_commit(lambda: node_ready.send(sender=Node, node=node), robust=True)


def _probe(node: Node, *, full: bool = False) -> NodeHealth | ProbeFailed:
    # A node coming back from failures may have restarted: refetch everything then.
    fresh = full or node.consecutive_failures > 0 or node.last_seen_at is None
    try:
        return probe_node(node, previous=None if fresh else node.health)
    except ProbeFailed as exc:
        return exc


def _record(node: Node, result: NodeHealth | ProbeFailed) -> Node:
    if isinstance(result, ProbeFailed):
        return node_record_failure(node=node, error=result.message)
    return node_record_health(node=node, health=result)
