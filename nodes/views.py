from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes import services
from nodes.models import Node
from nodes.serializers import NodeCreateInput, NodeOutput, NodeUpdateInput

REFUSED = OpenApiResponse(description="The node is unreachable, not a ComfyUI, or refuses our credentials.")


class NodeCheckRefused(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "node_check_failed"


class NodeInUse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "node_busy"


class NodeApi(APIView):
    """Staff only: nodes hold credentials and run everyone's jobs."""

    permission_classes = [IsAdminUser]

    def get_node(self, node_id: int) -> Node:
        return get_object_or_404(Node, id=node_id)


class NodeListApi(NodeApi):
    @extend_schema(responses=NodeOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(NodeOutput(Node.objects.all(), many=True).data)

    @extend_schema(request=NodeCreateInput, responses={201: NodeOutput, 400: REFUSED})
    def post(self, request: Request) -> Response:
        """Register a node; it is checked at once and refused when it does not answer as a ComfyUI."""
        data = NodeCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            node = services.node_create(**data.validated_data)
        except services.NodeCheckFailed as exc:
            raise NodeCheckRefused(str(exc)) from exc
        return Response(NodeOutput(node).data, status=status.HTTP_201_CREATED)


class NodeDetailApi(NodeApi):
    @extend_schema(responses=NodeOutput)
    def get(self, request: Request, node_id: int) -> Response:
        return Response(NodeOutput(self.get_node(node_id)).data)

    @extend_schema(request=NodeUpdateInput, responses={200: NodeOutput, 400: REFUSED})
    def patch(self, request: Request, node_id: int) -> Response:
        """Edit name, capacity, enabled, address or credentials; a new address or credentials are checked."""
        node = self.get_node(node_id)
        data = NodeUpdateInput(node, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            node = services.node_update(node=node, **data.validated_data)
        except services.NodeCheckFailed as exc:
            raise NodeCheckRefused(str(exc)) from exc
        return Response(NodeOutput(node).data)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="The node still holds jobs.")})
    def delete(self, request: Request, node_id: int) -> Response:
        """Remove a node that holds no job."""
        try:
            services.node_delete(node=self.get_node(node_id))
        except services.NodeBusy as exc:
            raise NodeInUse(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class NodeDrainApi(NodeApi):
    @extend_schema(request=None, responses=NodeOutput)
    def post(self, request: Request, node_id: int) -> Response:
        """Give the node no new job; those it holds finish."""
        return Response(NodeOutput(services.node_drain(node=self.get_node(node_id))).data)


class NodeResumeApi(NodeApi):
    @extend_schema(request=None, responses=NodeOutput)
    def post(self, request: Request, node_id: int) -> Response:
        """Undo a drain: the node takes jobs again."""
        return Response(NodeOutput(services.node_resume(node=self.get_node(node_id))).data)


class NodeCheckApi(NodeApi):
    @extend_schema(request=None, responses=NodeOutput)
    def post(self, request: Request, node_id: int) -> Response:
        """Check the node now, models and object_info included; a failure shows in last_error."""
        node = services.node_check(node=self.get_node(node_id), full=True)
        return Response(NodeOutput(node).data)
