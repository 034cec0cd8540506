from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path

from . import cache
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
    """The input-file cache: totals and the most used files above the list, and purging what no job needs."""

    list_display = ["__str__", "size", "content_type", "hits", "active_jobs", "last_used_at", "created_at"]
    search_fields = ["sha256", "source_url", "original_name"]
    ordering = ["-last_used_at"]
    actions = ["purge_selected"]
    change_list_template = "admin/generations/cachedfile/change_list.html"
    readonly_fields = [
        "sha256",
        "source_url",
        "file",
        "original_name",
        "size",
        "content_type",
        "created_at",
        "last_used_at",
        "hits",
    ]

    def get_queryset(self, request):
        active = Count("jobs", filter=Q(jobs__state__in=Job.ACTIVE_STATES), distinct=True)
        return super().get_queryset(request).annotate(active_jobs=active)

    @admin.display(description="active jobs", ordering="active_jobs")
    def active_jobs(self, entry: CachedFile) -> int:
        return entry.active_jobs

    # Deleting goes through the purge, which keeps files a queued or running job needs and removes the bytes.
    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False

    def get_urls(self):
        purge = path("purge/", self.admin_site.admin_view(self.purge_view), name="generations_cachedfile_purge")
        return [purge, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        top = CachedFile.objects.order_by("-hits", "-last_used_at")[:10]
        extra = {"cache": cache.cache_summary(), "top_files": top}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    @admin.action(description="Purge selected files (files of queued or running jobs stay)")
    def purge_selected(self, request, queryset) -> None:
        self._purged(request, cache.cache_purge(list(queryset)))

    def purge_view(self, request):
        if request.method != "POST" or not self.has_change_permission(request):
            return HttpResponseNotAllowed(["POST"])
        self._purged(request, cache.cache_purge())
        return redirect("admin:generations_cachedfile_changelist")

    def _purged(self, request, count: int) -> None:
        self.message_user(request, f"Purged {count} cached file(s); files of queued or running jobs were kept.")
