from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework import serializers

from nodes import services
from nodes.health import NodeHealth
from nodes.models import Node
from nodes.serializers import validate_extra_headers

GB = 1024**3


class NodeForm(forms.ModelForm):
    base_url = forms.URLField(max_length=500, assume_scheme="http", help_text="e.g. http://10.0.0.5:8188")
    # Credentials are write-only: the form never renders the stored token or header values.
    auth_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Bearer token sent to the node. Leave empty to keep the stored one.",
    )
    new_extra_headers = forms.CharField(
        label="Extra headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One `Name: value` per line, replacing the stored ones. Leave empty to keep them.",
    )
    clear_credentials = forms.BooleanField(
        required=False, help_text="Forget the stored token and extra headers (unless new ones are given)."
    )

    # The result of the check run by clean(), recorded once the node is saved.
    health: NodeHealth | None = None

    class Meta:
        model = Node
        fields = ["name", "base_url", "enabled", "capacity", "auth_token"]

    def clean_auth_token(self) -> str:
        token = self.cleaned_data.get("auth_token")
        keep = self.instance.auth_token if self.instance.pk and not self.data.get("clear_credentials") else ""
        return token or keep

    def clean_new_extra_headers(self) -> dict[str, str] | None:
        lines = [line.strip() for line in self.cleaned_data.get("new_extra_headers", "").splitlines()]
        if not any(lines):
            return None
        headers = {}
        for line in filter(None, lines):
            name, sep, value = line.partition(":")
            if not sep:
                raise forms.ValidationError(f"Expected `Name: value`, got {line!r}.")
            headers[name.strip()] = value.strip()
        try:
            return validate_extra_headers(headers)
        except serializers.ValidationError as exc:
            raise forms.ValidationError(exc.detail) from exc

    def clean(self) -> dict[str, Any]:
        """Check a new node, or a new address or credentials, the same way the API does."""
        data = super().clean()
        if self.errors:
            return data
        headers = data.get("new_extra_headers")
        if headers is None:
            keep = self.instance.pk and not data.get("clear_credentials")
            headers = self.instance.extra_headers if keep else {}
        data["extra_headers"] = headers
        connection = {"base_url": data["base_url"], "auth_token": data["auth_token"]}
        connection["extra_headers"] = headers
        if self.instance.pk and all(getattr(self.instance, k) == v for k, v in connection.items()):
            return data
        try:
            self.health = services.node_verify(node=Node(**connection))
        except services.NodeCheckFailed as exc:
            raise forms.ValidationError(str(exc), code=exc.kind) from exc
        return data


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    form = NodeForm
    list_display = [
        "name", "base_url", "status", "slots", "gpu", "vram", "version", "enabled", "last_seen_at",
    ]  # fmt: skip
    list_filter = ["status", "enabled"]
    search_fields = ["name", "base_url"]
    actions = ["check_now", "drain", "resume"]
    readonly_fields = [
        "status",
        "running",
        "extra_header_names",
        "health",
        "consecutive_failures",
        "last_error",
        "last_checked_at",
        "last_seen_at",
        "loaded_checkpoint",
        "avg_job_seconds",
    ]

    def save_model(self, request: HttpRequest, obj: Node, form: NodeForm, change: bool) -> None:
        obj.extra_headers = form.cleaned_data["extra_headers"]
        # Only the form's columns: `running` and `status` move under the dispatcher and the health checks.
        obj.save(update_fields=[*NodeForm.Meta.fields, "extra_headers"] if change else None)
        if form.health is not None:
            services.node_record_health(node=obj, health=form.health)

    @admin.display(description="running / capacity")
    def slots(self, node: Node) -> str:
        return f"{node.running} / {node.capacity}"

    @admin.display(description="GPU")
    def gpu(self, node: Node) -> str:
        return _health(node).get("gpu") or "—"

    @admin.display(description="VRAM free / total")
    def vram(self, node: Node) -> str:
        health = _health(node)
        if not health.get("vram_total"):
            return "—"
        return f"{health['vram_free'] / GB:.1f} / {health['vram_total'] / GB:.1f} GB"

    @admin.display(description="ComfyUI")
    def version(self, node: Node) -> str:
        return _health(node).get("comfyui_version") or "—"

    @admin.display(description="extra header names")
    def extra_header_names(self, node: Node) -> str:
        return ", ".join(sorted(node.extra_headers or {})) or "—"

    @admin.action(description="Check now")
    def check_now(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            node = services.node_check(node=node, full=True)
            level = messages.ERROR if node.last_error else messages.SUCCESS
            self.message_user(request, f"{node.name}: {node.last_error or node.status}", level)

    @admin.action(description="Drain (no new jobs; running ones finish)")
    def drain(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            services.node_drain(node=node)
        self.message_user(request, f"Drained {len(queryset)} node(s).", messages.SUCCESS)

    @admin.action(description="Resume (take jobs again)")
    def resume(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            services.node_resume(node=node)
        self.message_user(request, f"Resumed {len(queryset)} node(s).", messages.SUCCESS)


def _health(node: Node) -> dict[str, Any]:
    return node.health if isinstance(node.health, dict) else {}
