from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from comfyrouter.serializers import BodySerializer
from workflows_app.models import Endpoint, Workflow, WorkflowVersion
from workflows_app.schema import input_schema
from workflows_app.services import version_params


def public_url(path: str, request=None) -> str:
    return request.build_absolute_uri(path) if request is not None else settings.COMFYROUTER_PUBLIC_URL + path


class WorkflowImportInput(BodySerializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    graph = serializers.JSONField(help_text="The workflow: API format or the editor's workflow.json (UI format).")


class WorkflowVersionOutput(serializers.ModelSerializer):
    workflow = serializers.CharField(source="workflow.name")
    inputs = serializers.SerializerMethodField()
    outputs = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowVersion
        fields = ["id", "workflow", "number", "source_format", "created_at", "inputs", "outputs"]

    def get_inputs(self, version: WorkflowVersion) -> list[str]:
        return [param.field for param in version_params(version.id).inputs]

    def get_outputs(self, version: WorkflowVersion) -> list[str]:
        return [output.name for output in version_params(version.id).outputs]


class WorkflowOutput(serializers.ModelSerializer):
    versions = WorkflowVersionOutput(many=True, read_only=True)
    endpoints = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = ["id", "name", "description", "created_at", "updated_at", "versions", "endpoints"]

    def get_endpoints(self, workflow: Workflow) -> list[dict[str, Any]]:
        endpoints = Endpoint.objects.filter(version__workflow=workflow).select_related("version")
        return [{"slug": endpoint.slug, "version": endpoint.version.number} for endpoint in endpoints]


class EndpointFieldsInput(BodySerializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    output_mode = serializers.ChoiceField(choices=Endpoint.OutputMode.choices, required=False)
    max_wait = serializers.IntegerField(min_value=1, max_value=3600, required=False)
    defaults = serializers.DictField(required=False, help_text='{input field: value}, e.g. {"steps": 30}.')


class EndpointPublishInput(EndpointFieldsInput):
    slug = serializers.SlugField(max_length=100)
    workflow = serializers.CharField(max_length=200, help_text="The workflow's id or name.")

    def validate_workflow(self, value: str) -> Workflow:
        found = Workflow.objects.filter(name=value).first()
        if found is None and value.isdigit():
            found = Workflow.objects.filter(id=int(value)).first()
        if found is None:
            raise serializers.ValidationError(f"No workflow has the id or name {value!r}.")
        return found


class EndpointOutput(serializers.ModelSerializer):
    workflow = serializers.CharField(source="version.workflow.name")
    workflow_id = serializers.IntegerField(source="version.workflow_id")
    version = serializers.IntegerField(source="version.number")
    input_schema = serializers.SerializerMethodField()
    outputs = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Endpoint
        fields = ["slug", "title", "description", "enabled", "builtin", "output_mode", "max_wait",
                  "defaults", "workflow", "workflow_id", "version", "input_schema", "outputs", "links",
                  "updated_at"]  # fmt: skip

    def get_input_schema(self, endpoint: Endpoint) -> dict[str, Any]:
        return input_schema(version_params(endpoint.version_id))

    def get_outputs(self, endpoint: Endpoint) -> list[str]:
        return [output.name for output in version_params(endpoint.version_id).outputs]

    def get_links(self, endpoint: Endpoint) -> dict[str, str]:
        request = self.context.get("request")
        return {
            "self": public_url(f"/api/endpoints/{endpoint.slug}", request),
            "run": public_url(f"/api/endpoints/{endpoint.slug}/run", request),
        }
