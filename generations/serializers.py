from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from comfyrouter.serializers import BodySerializer
from generations.downloads import DownloadRefused, check_url
from generations.models import Job, JobOutput
from generations.signing import output_token
from workflows_app.params import AnnotationError, parse_title


def absolute(path: str, request=None) -> str:
    return request.build_absolute_uri(path) if request is not None else settings.COMFYROUTER_PUBLIC_URL + path


def job_url(job: Job, request=None) -> str:
    """The job's API address: its JSON's `links.self`, and the Location of answers that name it."""
    return absolute(f"/api/jobs/{job.id}", request)


def ws_url(path: str, request=None) -> str:
    url = absolute(path, request)
    return "ws" + url.removeprefix("http")


# The job JSON is built by plain functions (job_json): DRF's ModelSerializer costs about 7 ms per job, a
# third of a sync request's CPU. The serializers below declare the same shape for the OpenAPI schema and
# delegate their representation to those functions; a test holds the two in step.


def iso(moment: datetime | None) -> str | None:
    """A datetime as DRF writes it: ISO 8601 in the current time zone, UTC as `Z`."""
    if moment is None:
        return None
    text = timezone.localtime(moment).isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def output_json(output: JobOutput, request=None) -> dict[str, Any]:
    return {
        "index": output.index,
        "node_id": output.node_id,
        "node_title": output.node_title,
        "filename": output.filename,
        "type": output.kind,
        "content_type": output.content_type,
        "size": output.size,
        "width": output.width,
        "height": output.height,
        "sha256": output.sha256,
        "url": absolute(f"/api/jobs/{output.job_id}/outputs/{output.index}", request),
    }


def job_json(job: Job, request=None) -> dict[str, Any]:
    """The job as every API and webhook shows it."""
    # Only the transaction that marks a job succeeded records outputs: no query for any other job.
    outputs = list(job.outputs.all()) if job.state == Job.State.SUCCEEDED else []
    return {
        "id": str(job.id),
        "state": job.state,
        "endpoint": job.endpoint.slug if job.endpoint_id else None,
        "source": job.source,
        "priority": job.priority,
        "node": job.node.name if job.node_id else None,
        "attempts": job.attempts,
        "progress": {
            "value": job.progress_value,
            "max": job.progress_max,
            "fraction": job.progress,
            "node": job.current_node,
        },
        "error": job.error,
        "error_node": job.error_node,
        "created_at": iso(job.created_at),
        "assigned_at": iso(job.assigned_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "outputs": [output_json(output, request) for output in outputs],
        "outputs_by_name": {
            name: [output_json(output, request) for output in files]
            for name, files in outputs_by_name(outputs).items()
        },
        "webhook": {
            "url": job.webhook_url,
            "attempts": job.webhook_attempts,
            "delivered_at": iso(job.webhook_delivered_at),
            "error": job.webhook_error,
        }
        if job.webhook_url
        else None,
        "links": {
            "self": job_url(job, request),
            "cancel": absolute(f"/api/jobs/{job.id}/cancel", request),
            "page": absolute(f"/jobs/{job.id}/", request),
            "preview": absolute(f"/preview/{job.id}", request),
            "ws": ws_url(f"/ws/jobs/{job.id}/", request),
        },
    }


def signed_url(output: JobOutput, request=None) -> str:
    """A link to the file that works without credentials for COMFYROUTER_SIGNED_URL_TTL seconds."""
    return absolute(f"/files/{output_token(output)}", request)


def outputs_by_name(outputs: Iterable[JobOutput]) -> dict[str, list[JobOutput]]:
    """Files by output name, the `[name]` tag of their node's title; by node id when none is named."""
    named: dict[str, list[JobOutput]] = {}
    by_node: dict[str, list[JobOutput]] = {}
    for output in outputs:
        by_node.setdefault(output.node_id, []).append(output)
        if name := _output_name(output.node_title):
            named.setdefault(name, []).append(output)
    return named or by_node


def _output_name(title: str) -> str | None:
    try:
        tags = parse_title(title).tags
    except AnnotationError:
        return None
    return next((tag.name for tag in tags if not tag.widgets), None)


class JobOutputFile(serializers.Serializer):
    index = serializers.IntegerField()
    node_id = serializers.CharField()
    node_title = serializers.CharField()
    filename = serializers.CharField()
    type = serializers.CharField(help_text="output or temp")
    content_type = serializers.CharField()
    size = serializers.IntegerField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField()
    url = serializers.URLField(help_text="The file (needs the same credentials as the job).")

    def to_representation(self, output: JobOutput) -> dict[str, Any]:
        return output_json(output, self.context.get("request"))


class JobProgress(serializers.Serializer):
    value = serializers.IntegerField()
    max = serializers.IntegerField()
    fraction = serializers.FloatField()
    node = serializers.CharField(help_text="The ComfyUI node running now.")


class JobWebhook(serializers.Serializer):
    url = serializers.URLField()
    attempts = serializers.IntegerField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()


class JobLinks(serializers.Serializer):
    self = serializers.URLField()
    cancel = serializers.URLField()
    page = serializers.URLField()
    preview = serializers.URLField()
    ws = serializers.CharField(help_text="The job's WebSocket (progress, previews).")


class JobDetail(serializers.Serializer):
    id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=Job.State.choices)
    endpoint = serializers.SlugField(allow_null=True)
    source = serializers.ChoiceField(choices=Job.Source.choices)
    priority = serializers.IntegerField()
    node = serializers.CharField(allow_null=True, help_text="The node's name.")
    attempts = serializers.IntegerField()
    progress = JobProgress()
    error = serializers.CharField()
    error_node = serializers.CharField()
    created_at = serializers.DateTimeField()
    assigned_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    outputs = JobOutputFile(many=True)
    outputs_by_name = serializers.DictField(child=JobOutputFile(many=True))
    webhook = JobWebhook(allow_null=True)
    links = JobLinks()

    def to_representation(self, job: Job) -> dict[str, Any]:
        return job_json(job, self.context.get("request"))


@extend_schema_field(
    {"oneOf": [{"type": "boolean"}, {"type": "number", "minimum": 0}], "description": "false, true or seconds"}
)
class WaitField(serializers.Field):
    """`false` (default), `true` (the endpoint's longest wait) or a number of seconds."""

    default_error_messages = {"invalid": "Must be true, false or a number of seconds ≥ 0."}

    def to_internal_value(self, data: Any) -> float | bool:
        if isinstance(data, bool):
            return data
        if isinstance(data, int | float) and data >= 0:
            return float(data)
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class EndpointRunInput(BodySerializer):
    inputs = serializers.DictField(required=False, default=dict, help_text="The endpoint's inputs.")
    wait = WaitField(required=False, default=False)
    webhook_url = serializers.URLField(required=False, default="", max_length=2000)
    priority = serializers.IntegerField(required=False, default=0, min_value=-10, max_value=10)

    def validate_webhook_url(self, url: str) -> str:
        if url:
            try:
                check_url(url)  # the same address rules as URL inputs: no private targets unless allowed
            except DownloadRefused as exc:
                raise serializers.ValidationError(f"Webhook URL refused: {exc}.") from None
        return url
