from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from comfyrouter.prepared import Prepared


class Workflow(models.Model):
    """A named ComfyUI graph; every edit makes a new `WorkflowVersion`."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def latest_version(self) -> WorkflowVersion | None:
        return self.versions.order_by("-number").first()


class WorkflowVersion(models.Model):
    """An immutable API-format graph. Endpoints point at a version, never at a moving target."""

    class SourceFormat(models.TextChoices):
        API = "api", "API format"
        UI = "ui", "UI format (workflow.json)"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField(help_text="API-format graph: {node_id: {class_type, inputs, _meta}}")
    source_format = models.CharField(max_length=8, choices=SourceFormat.choices, default=SourceFormat.API)
    source = models.JSONField(null=True, blank=True, help_text="The graph as imported.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [models.UniqueConstraint(fields=["workflow", "number"], name="unique_workflow_version")]

    def __str__(self) -> str:
        return f"{self.workflow.name} v{self.number}"


class EndpointQuerySet(models.QuerySet):
    def enabled(self) -> EndpointQuerySet:
        return self.filter(enabled=True)


class Endpoint(models.Model):
    """A published workflow version reachable at /api/endpoints/<slug>/run."""

    class OutputMode(models.TextChoices):
        BASE64 = "base64", "base64 in the response"
        URL = "url", "signed, expiring URLs"

    slug = models.SlugField(max_length=100, unique=True)
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="endpoints")
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    builtin = models.BooleanField(default=False, editable=False)
    defaults = models.JSONField(default=dict, blank=True)
    output_mode = models.CharField(max_length=8, choices=OutputMode.choices, default=OutputMode.URL)
    max_wait = models.PositiveIntegerField(
        default=300, help_text="Longest synchronous wait in seconds for this endpoint."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


# The read of every run (compiled once: comfyrouter.prepared). A get by the unique slug, without the ORDER BY; the
# version's graph comes parsed from workflows_app.services.version_graph, its imported source is not needed.
RUNNABLE = Prepared(
    lambda slug: Endpoint.objects.enabled().select_related("version").defer("version__graph", "version__source")
    .filter(slug=slug)
)  # fmt: skip


def runnable_endpoint(slug: str) -> Endpoint | None:
    """The enabled endpoint `slug`, with the version a run renders from; None if there is none."""
    try:
        return RUNNABLE.get(slug=slug)
    except Endpoint.DoesNotExist:
        return None
