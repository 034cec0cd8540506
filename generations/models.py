from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobQuerySet(models.QuerySet):
    def queued(self) -> JobQuerySet:
        return self.filter(state=Job.State.QUEUED)

    def active(self) -> JobQuerySet:
        return self.filter(state__in=Job.ACTIVE_STATES)

    def finished(self) -> JobQuerySet:
        return self.filter(state__in=Job.FINISHED_STATES)

    def for_json(self) -> JobQuerySet:
        """With what the job JSON shows, without the big columns it does not: the prompt, the node's health."""
        return self.select_related("endpoint", "node").defer("prompt", "node__health")


class Job(models.Model):
    """One prompt run. The Job table is the queue and the truth; its UUID is its identity."""

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        ASSIGNED = "assigned", "assigned"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    class Source(models.TextChoices):
        ENDPOINT = "endpoint", "endpoint API"
        OPENAI = "openai", "OpenAI images API"
        COMFY = "comfy", "ComfyUI-compatible API"

    ACTIVE_STATES = (State.QUEUED, State.ASSIGNED, State.RUNNING)
    FINISHED_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
    # What a claim writes (hand_over).
    HANDED_OVER = ("state", "node", "assigned_at", "heartbeat_at", "worker", "prompt_id", "client_id", "attempts")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ENDPOINT)
    endpoint = models.ForeignKey(
        "workflows_app.Endpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    api_key = models.ForeignKey(
        "comfyrouter.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    inputs = models.JSONField(default=dict, blank=True)
    prompt = models.JSONField(default=dict, blank=True, help_text="The rendered API-format graph.")
    # The model files the prompt loads ({folder: [names]}), written when the job is queued, so claims read the
    # queue without its prompts (of tens of kilobytes). Null (rows not made by job_create): read from the prompt.
    model_files = models.JSONField(null=True, blank=True, editable=False)
    input_files = models.ManyToManyField("generations.CachedFile", blank=True, related_name="jobs")
    has_input_files = models.BooleanField(
        default=False, editable=False, help_text="Whether it has input files: its executor reads them only then."
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first.")
    node = models.ForeignKey("nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    client_id = models.CharField(max_length=64, blank=True)
    prompt_id = models.CharField(max_length=64, blank=True, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    progress_value = models.PositiveIntegerField(default=0)
    progress_max = models.PositiveIntegerField(default=0)
    current_node = models.CharField(max_length=200, blank=True, help_text="ComfyUI node running.")
    error = models.TextField(blank=True)
    error_node = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(
        max_length=200,
        blank=True,
        help_text="The lease: its executor (host:pid:token), or the claim's token until its first heartbeat.",
    )
    webhook_url = models.URLField(max_length=2000, blank=True)
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)
    webhook_next_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When the next webhook delivery is due."
    )
    webhook_error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "-priority", "created_at"], name="job_queue_order"),
            # Whether another client has jobs queued, without reading the queue (dispatch._queue_client_ends).
            models.Index(fields=["state", "api_key", "owner"], name="job_queue_clients"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="unique_idempotency_key_per_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.state})"

    def hand_over(self, node, now) -> dict[str, object]:
        """The fields a claim writes: the assignment, and the lease of the executor the job is handed to.

        The lease comes with the claim, so that executor writes nothing before it posts the prompt: the
        Celery message names the lease (`worker`), and the prompt and client ids are stored before the POST
        (an executor replacing a killed one finds the prompt on the node by them).
        """
        lease = f"handed-over:{uuid.uuid4().hex[:12]}"
        return {"state": Job.State.ASSIGNED, "node": node, "assigned_at": now, "heartbeat_at": now,
                "worker": lease, **Job.prompt_ids(), "attempts": self.attempts + 1}  # fmt: skip

    @staticmethod
    def prompt_ids() -> dict[str, str]:
        """New ComfyUI prompt and client ids for a job, stored before its prompt is posted."""
        return {"prompt_id": str(uuid.uuid4()), "client_id": uuid.uuid4().hex}

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES

    @property
    def progress(self) -> float:
        return self.progress_value / self.progress_max if self.progress_max else 0.0


class JobOutput(models.Model):
    """A file a job produced, copied from the node into Django storage."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveSmallIntegerField()
    node_id = models.CharField(max_length=64)
    node_title = models.CharField(max_length=200, blank=True)
    file = models.FileField(upload_to="outputs/%Y/%m/%d/", max_length=500)
    filename = models.CharField(max_length=255, help_text="The name ComfyUI gave the file.")
    kind = models.CharField(max_length=16, default="output", help_text="output or temp")
    content_type = models.CharField(max_length=100, default="image/png")
    size = models.PositiveBigIntegerField(default=0)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job_id", "index"]  # by the column: ordering by "job" joined the job for its own ordering
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="unique_job_output_index")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.index} {self.filename}"


class CachedFile(models.Model):
    """An input file fetched once (URL or base64), content-addressed by sha256."""

    sha256 = models.CharField(max_length=64, unique=True)
    source_url = models.URLField(max_length=2000, blank=True, db_index=True)
    file = models.FileField(upload_to="cache/", max_length=500)
    original_name = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(default=timezone.now, db_index=True)
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-last_used_at"]

    def __str__(self) -> str:
        return self.original_name or self.source_url or self.sha256[:12]
