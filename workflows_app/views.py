from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import SAFE_METHODS, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from workflows_app import services
from workflows_app.models import Endpoint, Workflow
from workflows_app.params import WorkflowError
from workflows_app.serializers import (
    EndpointFieldsInput,
    EndpointOutput,
    EndpointPublishInput,
    WorkflowImportInput,
    WorkflowOutput,
    WorkflowVersionOutput,
)

INVALID = OpenApiResponse(description='{"detail", "code", "errors": [every problem]}')


def invalid(exc: WorkflowError, code: str, detail: str) -> Response:
    return Response({"detail": detail, "code": code, "errors": exc.messages}, status=400)


class OpenToUsers(IsAuthenticated):
    """Anyone signed in may use the view's `open_methods` (reads by default); the other methods are for staff."""

    def has_permission(self, request, view) -> bool:
        if request.method in getattr(view, "open_methods", SAFE_METHODS):
            return super().has_permission(request, view)
        return IsAdminUser().has_permission(request, view)


class WorkflowListApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=WorkflowOutput(many=True))
    def get(self, request: Request) -> Response:
        workflows = Workflow.objects.prefetch_related("versions__workflow")
        return Response(WorkflowOutput(workflows, many=True).data)

    @extend_schema(
        operation_id="workflow_import",
        request=WorkflowImportInput,
        responses={201: WorkflowVersionOutput, 400: INVALID},
    )
    def post(self, request: Request) -> Response:
        """Import a workflow (API or UI format): a new workflow, or a new version of the one with this name."""
        data = WorkflowImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            version = services.workflow_import(**data.validated_data, user=request.user)
        except WorkflowError as exc:
            return invalid(exc, "invalid_workflow", "The workflow cannot be imported.")
        return Response(WorkflowVersionOutput(version).data, status=201)


class WorkflowDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=WorkflowOutput)
    def get(self, request: Request, workflow_id: int) -> Response:
        return Response(WorkflowOutput(get_object_or_404(Workflow, id=workflow_id)).data)


class EndpointListApi(APIView):
    permission_classes = [OpenToUsers]

    @extend_schema(responses=EndpointOutput(many=True))
    def get(self, request: Request) -> Response:
        endpoints = Endpoint.objects.select_related("version__workflow")
        if not request.user.is_staff:
            endpoints = endpoints.enabled()
        return Response(EndpointOutput(endpoints, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="endpoint_publish",
        request=EndpointPublishInput,
        responses={200: EndpointOutput, 201: EndpointOutput, 400: INVALID},
    )
    def post(self, request: Request) -> Response:
        """Publish the workflow's latest version at `slug`; an existing slug is moved to it (republish)."""
        data = EndpointPublishInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        existed = Endpoint.objects.filter(slug=fields["slug"]).exists()
        try:
            endpoint = services.endpoint_publish(**fields, user=request.user)
        except WorkflowError as exc:
            return invalid(exc, "invalid_endpoint", "The endpoint cannot be published.")
        body = EndpointOutput(endpoint, context={"request": request}).data
        return Response(body, status=200 if existed else 201)


class EndpointDetailApi(APIView):
    """One endpoint: anyone signed in reads it; staff change or remove it."""

    permission_classes = [OpenToUsers]

    def get_endpoint(self, request: Request, slug: str) -> Endpoint:
        endpoints = Endpoint.objects.select_related("version__workflow")
        return get_object_or_404(endpoints if request.user.is_staff else endpoints.enabled(), slug=slug)

    @extend_schema(responses=EndpointOutput)
    def get(self, request: Request, slug: str) -> Response:
        return Response(EndpointOutput(self.get_endpoint(request, slug), context={"request": request}).data)

    @extend_schema(request=EndpointFieldsInput, responses={200: EndpointOutput, 400: INVALID})
    def patch(self, request: Request, slug: str) -> Response:
        endpoint = self.get_endpoint(request, slug)
        data = EndpointFieldsInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            endpoint = services.endpoint_update(endpoint=endpoint, **data.validated_data)
        except WorkflowError as exc:
            return invalid(exc, "invalid_endpoint", "The endpoint cannot be changed.")
        return Response(EndpointOutput(endpoint, context={"request": request}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str) -> Response:
        services.endpoint_unpublish(endpoint=self.get_endpoint(request, slug))
        return Response(status=204)
