from __future__ import annotations

from django import forms
from django.contrib import admin

from .models import Node


class NodeForm(forms.ModelForm):
    # Credentials are write-only: the form never renders the stored token.
    auth_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Bearer token sent to the node. Leave empty to keep the stored one.",
    )

    class Meta:
        model = Node
        fields = ["name", "base_url", "enabled", "status", "capacity", "auth_token"]

    def clean_auth_token(self):
        token = self.cleaned_data.get("auth_token")
        return token or (self.instance.auth_token if self.instance.pk else "")


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    form = NodeForm
    list_display = ["name", "base_url", "status", "running", "capacity", "enabled", "last_seen_at"]
    list_filter = ["status", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = [
        "running",
        "health",
        "consecutive_failures",
        "last_error",
        "last_checked_at",
        "last_seen_at",
        "loaded_checkpoint",
        "avg_job_seconds",
    ]
