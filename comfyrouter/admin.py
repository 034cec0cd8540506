from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import ForeignKey, QuerySet
from django.forms import Form, ModelChoiceField
from django.http import HttpRequest

from .models import ApiKey
from .services import api_key_create, api_key_revoke


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created through `api_key_create`; the raw key appears once, in a message."""

    list_display = ["prefix", "name", "owner", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    list_select_related = ["owner"]
    search_fields = ["prefix", "name", "owner__username"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["owner", "name"]
        return ["prefix", "owner", "name", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return [] if obj is None else ["prefix", "owner", "created_at", "last_used_at", "revoked_at"]

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs
    ) -> ModelChoiceField | None:
        if db_field.name == "owner":
            kwargs["queryset"] = get_user_model().objects.filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_form(self, request: HttpRequest, form: Form, change: bool) -> ApiKey:
        unsaved = super().save_form(request, form, change)
        if change:
            return unsaved
        key, raw = api_key_create(owner=unsaved.owner, name=unsaved.name)
        messages.warning(request, f"New API key {key.prefix}… — copy it now, it is not shown again: {raw}")
        return key

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Form, change: bool) -> None:
        # New keys were already saved by api_key_create in save_form.
        if change:
            super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(keys)} API key(s).")
