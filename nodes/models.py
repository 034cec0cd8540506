from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from django.db import models
from django.db.models import F
from django.utils import timezone


def inventory_digest(health: Any) -> str:
    """The digest of the model inventory a `Node.health` document lists (its "models", or none)."""
    models = health.get("models") if isinstance(health, Mapping) else None
    canonical = json.dumps(models, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class NodeQuerySet(models.QuerySet):
    def dispatchable(self) -> NodeQuerySet:
        """Nodes that may take a new job now: reachable, not draining, with a free slot."""
        return self.filter(enabled=True, status__in=Node.ACCEPTING, running__lt=F("capacity"))

    def update(self, **fields: Any) -> int:
        if "health" in fields:  # the digest follows every write of the document
            fields["inventory_digest"] = inventory_digest(fields["health"])
        return super().update(**fields)


class Node(models.Model):
    """A ComfyUI server: one GPU queue."""

    class Status(models.TextChoices):
        IDLE = "idle", "idle"
        BUSY = "busy", "busy"
        OFFLINE = "offline", "offline"
        DRAINING = "draining", "draining"

    # The statuses in which a node takes new jobs.
    ACCEPTING = frozenset({Status.IDLE, Status.BUSY})

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500, help_text="e.g. http://10.0.0.5:8188")
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFLINE)
    capacity = models.PositiveSmallIntegerField(
        default=2, help_text="Prompts held on the node at once (running + waiting in its queue)."
    )
    running = models.PositiveSmallIntegerField(default=0, editable=False)
    # Never shown back: bearer token / extra headers sent on every call to the node.
    auth_token = models.CharField(max_length=500, blank=True)
    extra_headers = models.JSONField(default=dict, blank=True)
    health = models.JSONField(default=dict, blank=True, editable=False)
    # Written with `health` by save() and update() (not by bulk_create or raw SQL; "" then: not known). The
    # scheduler keeps each node's parsed inventory under it, and reads the document only when it changes.
    inventory_digest = models.CharField(max_length=64, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    loaded_checkpoint = models.CharField(max_length=500, blank=True, editable=False)
    avg_job_seconds = models.FloatField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        fields = kwargs.get("update_fields")
        if "health" in (fields or ()) or (fields is None and "health" not in self.get_deferred_fields()):
            self.inventory_digest = inventory_digest(self.health)
            if fields is not None:
                kwargs["update_fields"] = {*fields, "inventory_digest"}
        super().save(*args, **kwargs)

    @property
    def free_slots(self) -> int:
        return max(self.capacity - self.running, 0)

    def request_headers(self) -> dict[str, str]:
        headers = {str(k): str(v) for k, v in (self.extra_headers or {}).items()}
        if self.auth_token:
            headers["Authorization"] = f"Bearer {self.auth_token}"
        return headers
