from __future__ import annotations

from django.db import connection
from django.db.models import Count
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes.models import Node

from .auth import ApiKeyAuthentication, BasicAuthentication, api_key_of
from .redisconn import redis_client


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - health reports any failure as text
        return f"error: {exc}"


def check_redis() -> str:
    try:
        redis_client().ping()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc}"


def node_counts() -> dict[str, int]:
    counts = {status: 0 for status in Node.Status.values}
    try:
        for row in Node.objects.values("status").annotate(n=Count("id")):
            counts[row["status"]] = row["n"]
    except Exception:  # noqa: BLE001 - the database check already reports this
        pass
    return counts


class HealthApi(APIView):
    """Liveness and readiness: database, Redis and node counts. No authentication."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer(
            "HealthStatus",
            {
                "status": serializers.CharField(),
                "db": serializers.CharField(),
                "redis": serializers.CharField(),
                "nodes": serializers.DictField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        db, rds = check_database(), check_redis()
        healthy = db == "ok" and rds == "ok"
        body = {"status": "ok" if healthy else "degraded", "db": db, "redis": rds, "nodes": node_counts()}
        return Response(body, status=200 if healthy else 503)


def auth_method(request: Request) -> str:
    """How the request authenticated: "api_key", "basic" or "session"."""
    authenticator = request.successful_authenticator
    if isinstance(authenticator, ApiKeyAuthentication):
        return "api_key"
    return "basic" if isinstance(authenticator, BasicAuthentication) else "session"


class MeApi(APIView):
    """Who the credentials belong to: lets API consumers check a key or a password."""

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "username": serializers.CharField(),
                "is_staff": serializers.BooleanField(),
                "auth": serializers.ChoiceField(choices=["api_key", "basic", "session"]),
                "key_prefix": serializers.CharField(allow_null=True),
            },
        )
    )
    def get(self, request: Request) -> Response:
        key = api_key_of(request)
        body = {
            "username": request.user.get_username(),
            "is_staff": request.user.is_staff,
            "auth": auth_method(request),
            "key_prefix": key.prefix if key else None,
        }
        return Response(body)
