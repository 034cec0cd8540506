from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from generations.downloads import DownloadRefused, check_url
from generations.models import Job, JobOutput
from generations.signing import output_token
from workflows_app.params import AnnotationError, parse_title


def absolute(path: str, request=None) -> str:
    return request.build_absolute_uri(path) if request is not None else settings.COMFYROUTER_PUBLIC_URL + path


def ws_url(path: str, request=None) -> str:
    url = absolute(path, request)
    return "ws" + url.removeprefix("http")


class JobOutputFile(serializers.ModelSerializer):
    type = serializers.CharField(source="kind")
    url = serializers.SerializerMethodField()

    class Meta:
        model = JobOutput
        fields = ["index", "node_id", "node_title", "filename", "type", "content_type", "size", "width",
                  "height", "sha256", "url"]  # fmt: skip

    def get_url(self, output: JobOutput) -> str:
        return absolute(f"/api/jobs/{output.job_id}/outputs/{output.index}", self.context.get("request"))


def signed_url(output: JobOutput, request=None) -> str:
    """A link to the file that works without credentials for COMFYROUTER_SIGNED_URL_TTL seconds."""
    return absolute(f"/files/{output_token(output)}", request)


class JobProgress(serializers.Serializer):
    value = serializers.IntegerField(source="progress_value")
    max = serializers.IntegerField(source="progress_max")
    fraction = serializers.FloatField(source="progress")
    node = serializers.CharField(source="current_node")


class JobWebhook(serializers.Serializer):
    url = serializers.URLField(source="webhook_url")
    attempts = serializers.IntegerField(source="webhook_attempts")
    delivered_at = serializers.DateTimeField(source="webhook_delivered_at")
    error = serializers.CharField(source="webhook_error")


class JobDetail(serializers.ModelSerializer):
    endpoint = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    node = serializers.SlugRelatedField(slug_field="name", read_only=True)
    progress = JobProgress(source="*")
    outputs = JobOutputFile(many=True, read_only=True)
    outputs_by_name = serializers.SerializerMethodField()
    webhook = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "state", "endpoint", "source", "priority", "node", "attempts", "progress", "error",
                  "error_node", "created_at", "assigned_at", "started_at", "finished_at", "outputs",
                  "outputs_by_name", "webhook", "links"]  # fmt: skip

    def get_outputs_by_name(self, job: Job) -> dict[str, list[dict[str, Any]]]:
        context = {"request": self.context.get("request")}
        return {
            name: JobOutputFile(files, many=True, context=context).data
            for name, files in outputs_by_name(job).items()
        }

    def get_webhook(self, job: Job) -> dict[str, Any] | None:
        return JobWebhook(job).data if job.webhook_url else None

    def get_links(self, job: Job) -> dict[str, str]:
        request = self.context.get("request")
        return {
            "self": absolute(f"/api/jobs/{job.id}", request),
            "cancel": absolute(f"/api/jobs/{job.id}/cancel", request),
            "page": absolute(f"/jobs/{job.id}/", request),
            "preview": absolute(f"/preview/{job.id}", request),
            "ws": ws_url(f"/ws/jobs/{job.id}/", request),
        }


def outputs_by_name(job: Job) -> dict[str, list[JobOutput]]:
    """The job's files by output name, the `[name]` tag of their node's title; by node id when none is named."""
    named: dict[str, list[JobOutput]] = {}
    by_node: dict[str, list[JobOutput]] = {}
    for output in job.outputs.all():
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


def job_json(job: Job, request=None) -> dict[str, Any]:
    """The job as every API and webhook shows it."""
    return JobDetail(job, context={"request": request}).data


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


class EndpointRunInput(serializers.Serializer):
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
