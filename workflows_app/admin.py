from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import slugify

from workflows_app import services
from workflows_app.params import WorkflowError

from .models import Endpoint, Workflow, WorkflowVersion

MAX_WORKFLOW_BYTES = 10 * 1024 * 1024


class WorkflowImportForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="An existing name gets a new version.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    file = forms.FileField(help_text="workflow.json (UI format) or an API-format export.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_WORKFLOW_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_WORKFLOW_BYTES // 1024 // 1024} MiB.")
        try:
            return json.loads(upload.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise forms.ValidationError(f"The file is not JSON: {exc}") from None


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
    actions = ["publish"]
    change_list_template = "admin/workflows_app/workflow/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="workflows_app_workflow_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        form = WorkflowImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                version = services.workflow_import(
                    name=data["name"], graph=data["file"], user=request.user, description=data["description"]
                )
            except WorkflowError as exc:
                for message in exc.messages:
                    form.add_error(None, message)
            else:
                self.message_user(request, f"Imported {version} ({version.get_source_format_display()}).")
                return HttpResponseRedirect(
                    reverse("admin:workflows_app_workflow_change", args=[version.workflow_id])
                )
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Import a workflow file"}  # fmt: skip
        return TemplateResponse(request, "admin/workflows_app/workflow/import.html", context)

    @admin.action(description="Publish the latest version (endpoint slug = workflow name)")
    def publish(self, request: HttpRequest, queryset) -> None:
        for workflow in queryset:
            slug = slugify(workflow.name)[:100]
            try:
                endpoint = services.endpoint_publish(slug=slug, workflow=workflow, user=request.user)
            except WorkflowError as exc:
                self.message_user(request, f"{workflow}: {'; '.join(exc.messages)}", messages.ERROR)
            else:
                self.message_user(request, f"/api/endpoints/{endpoint.slug} now runs {endpoint.version}.")


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "source_format", "created_at"]
    list_filter = ["source_format"]
    readonly_fields = ["workflow", "number", "source_format", "graph", "source", "created_by", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from an import, and never change


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["slug", "version", "enabled", "builtin", "output_mode", "updated_at"]
    list_filter = ["enabled", "builtin", "output_mode"]
    search_fields = ["slug", "title"]
    actions = ["republish"]

    @admin.action(description="Republish on the workflow's latest version")
    def republish(self, request: HttpRequest, queryset) -> None:
        for endpoint in queryset.select_related("version__workflow"):
            try:
                endpoint = services.endpoint_publish(slug=endpoint.slug, workflow=endpoint.version.workflow)
            except WorkflowError as exc:
                self.message_user(request, f"{endpoint}: {'; '.join(exc.messages)}", messages.ERROR)
            else:
                self.message_user(request, f"{endpoint.slug} now runs {endpoint.version}.")
