from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from comfyrouter.serializers import BodySerializer
from nodes.models import Node

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by the client itself or by the token field: accepting them here would silently break calls.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "authorization"})


def _unique_name() -> UniqueValidator:
    return UniqueValidator(queryset=Node.objects.all(), message="A node with this name already exists.")


def validate_extra_headers(value: Any) -> dict[str, str]:
    """Header names must be valid tokens, values strings without line breaks."""
    if not isinstance(value, dict):
        raise serializers.ValidationError('Expected an object of header names to values: {"X-Pod": "..."}.')
    for name, header in value.items():
        if not _HEADER_NAME.match(name):
            raise serializers.ValidationError(f"{name!r} is not a valid header name.")
        if name.lower() in _RESERVED_HEADERS:
            raise serializers.ValidationError(f"{name} cannot be set here (a bearer token goes in auth_token).")
        if not isinstance(header, str) or "\r" in header or "\n" in header:
            raise serializers.ValidationError(f"The value of {name} must be a one-line string.")
    return value


class NodeCreateInput(BodySerializer):
    name = serializers.CharField(max_length=100, validators=[_unique_name()])
    base_url = serializers.URLField(max_length=500, help_text="e.g. http://10.0.0.5:8188")
    capacity = serializers.IntegerField(min_value=1, max_value=64, default=2)
    auth_token = serializers.CharField(
        max_length=500, required=False, default="", allow_blank=True, write_only=True, trim_whitespace=True
    )
    extra_headers = serializers.JSONField(
        required=False, default=dict, write_only=True, validators=[validate_extra_headers]
    )

    def validate_base_url(self, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Use an http:// or https:// address.")
        return value.rstrip("/")


class NodeUpdateInput(NodeCreateInput):
    """Every field optional; `auth_token: ""` / `extra_headers: {}` clear the stored credentials."""

    name = serializers.CharField(max_length=100, required=False, validators=[_unique_name()])
    base_url = serializers.URLField(max_length=500, required=False)
    capacity = serializers.IntegerField(min_value=1, max_value=64, required=False)
    enabled = serializers.BooleanField(required=False)
    auth_token = serializers.CharField(
        max_length=500, required=False, allow_blank=True, write_only=True, trim_whitespace=True
    )
    extra_headers = serializers.JSONField(required=False, write_only=True, validators=[validate_extra_headers])


class NodeOutput(serializers.ModelSerializer):
    """A node as operators see it: credentials appear only as `has_auth_token` and header names."""

    has_auth_token = serializers.SerializerMethodField()
    extra_header_names = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = [
            "id",
            "name",
            "base_url",
            "enabled",
            "status",
            "capacity",
            "running",
            "has_auth_token",
            "extra_header_names",
            "health",
            "consecutive_failures",
            "last_error",
            "last_checked_at",
            "last_seen_at",
            "loaded_checkpoint",
            "avg_job_seconds",
            "created_at",
        ]
        read_only_fields = fields

    def get_has_auth_token(self, node: Node) -> bool:
        return bool(node.auth_token)

    def get_extra_header_names(self, node: Node) -> list[str]:
        return sorted(node.extra_headers or {})
