from __future__ import annotations

from django.contrib import admin

from .models import Endpoint, Workflow, WorkflowVersion


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    fields = ["number", "source_format", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["name", "created_by", "updated_at"]
    search_fields = ["name"]
    inlines = [WorkflowVersionInline]


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "source_format", "created_at"]
    list_filter = ["source_format"]
    readonly_fields = ["workflow", "number", "source_format", "created_by", "created_at"]


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["slug", "version", "enabled", "builtin", "output_mode", "updated_at"]
    list_filter = ["enabled", "builtin", "output_mode"]
    search_fields = ["slug", "title"]
