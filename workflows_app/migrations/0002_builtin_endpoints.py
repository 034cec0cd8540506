"""Publish the built-in endpoints (workflows_app.builtin) as ordinary rows."""

from __future__ import annotations

from django.db import migrations

from workflows_app.builtin import BUILTINS


def create_builtins(apps, schema_editor) -> None:
    Workflow = apps.get_model("workflows_app", "Workflow")
    WorkflowVersion = apps.get_model("workflows_app", "WorkflowVersion")
    Endpoint = apps.get_model("workflows_app", "Endpoint")
    for builtin in BUILTINS:
        workflow, _ = Workflow.objects.get_or_create(
            name=builtin.slug, defaults={"description": builtin.description}
        )
        version, _ = WorkflowVersion.objects.get_or_create(
            workflow=workflow, number=1, defaults={"graph": builtin.graph, "source_format": "api"}
        )
        Endpoint.objects.get_or_create(
            slug=builtin.slug,
            defaults={
                "version": version,
                "title": builtin.title,
                "description": builtin.description,
                "builtin": True,
                "defaults": builtin.defaults,
            },
        )


def delete_builtins(apps, schema_editor) -> None:
    Workflow = apps.get_model("workflows_app", "Workflow")
    Endpoint = apps.get_model("workflows_app", "Endpoint")
    slugs = [builtin.slug for builtin in BUILTINS]
    Endpoint.objects.filter(slug__in=slugs, builtin=True).delete()
    # An operator may have published their own endpoint on a built-in workflow; keep those.
    Workflow.objects.filter(name__in=slugs).exclude(versions__endpoints__isnull=False).delete()


class Migration(migrations.Migration):
    dependencies = [("workflows_app", "0001_initial")]

    operations = [migrations.RunPython(create_builtins, delete_builtins)]
