from __future__ import annotations

from django.contrib import admin

from .models import CachedFile, Job, JobOutput


class JobOutputInline(admin.TabularInline):
    model = JobOutput
    extra = 0
    fields = ["index", "node_title", "file", "kind", "size", "width", "height", "sha256"]
    readonly_fields = fields
    can_delete = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "endpoint", "state", "node", "attempts", "created_at", "finished_at"]
    list_filter = ["state", "source", "node"]
    search_fields = ["id", "prompt_id", "idempotency_key"]
    date_hierarchy = "created_at"
    inlines = [JobOutputInline]
    readonly_fields = [f.name for f in Job._meta.fields if f.name not in ("priority",)]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(CachedFile)
class CachedFileAdmin(admin.ModelAdmin):
    list_display = ["__str__", "size", "content_type", "hits", "last_used_at"]
    search_fields = ["sha256", "source_url", "original_name"]
    readonly_fields = [
        "sha256",
        "source_url",
        "file",
        "size",
        "content_type",
        "created_at",
        "last_used_at",
        "hits",
    ]
