"""The job JSON (plain functions, for speed) and the serializers that document it have one shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.files.base import ContentFile
from drf_spectacular.generators import SchemaGenerator

from generations.models import Job, JobOutput
from generations.serializers import JobDetail, job_json
from workflows_app.models import Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(builtin_endpoints, user):
    job = Job.objects.create(
        endpoint=Endpoint.objects.get(slug="sd15-txt2img"), owner=user, state=Job.State.SUCCEEDED,
        progress_value=3, progress_max=4, current_node="3", webhook_url="https://hooks.example.com/x",
        webhook_attempts=2, webhook_delivered_at=datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
        finished_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )  # fmt: skip
    for index, title in enumerate(["Save [images]", "Save [images]", "Preview"]):
        output = JobOutput(job=job, index=index, node_id=str(9 + index), node_title=title, filename=f"{index}.png",
                           size=10, width=8, height=8, sha256="ab" * 32)  # fmt: skip
        output.file.save(f"{index}.png", ContentFile(b"x" * 10), save=True)
    return job


def shape(value):
    """Keys all the way down, lists by their first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def schema_shape(schema, components, value):
    if "$ref" in schema:
        return schema_shape(components[schema["$ref"].rsplit("/", 1)[1]], components, value)
    for option in schema.get("allOf", []) + schema.get("oneOf", []):
        if "$ref" in option:
            return schema_shape(option, components, value)
    if "properties" in schema:
        return {name: schema_shape(sub, components, value[name]) for name, sub in schema["properties"].items()}
    if schema.get("type") == "array":
        return [schema_shape(schema["items"], components, value[0])] if value else []
    if "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return {key: schema_shape(schema["additionalProperties"], components, item) for key, item in value.items()}
    return None


def test_the_json_has_every_field_the_schema_documents_and_no_other(job):
    body = job_json(Job.objects.get(id=job.id))
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert shape(body) == schema_shape(components["JobDetail"], components, body)
    assert set(body) == set(JobDetail().fields)


def test_the_json_values(job):
    body = JobDetail(Job.objects.get(id=job.id)).data
    assert body["id"] == str(job.id)
    assert (body["endpoint"], body["node"], body["state"]) == ("sd15-txt2img", None, "succeeded")
    assert body["progress"] == {"value": 3, "max": 4, "fraction": 0.75, "node": "3"}
    assert body["finished_at"] == "2026-01-02T03:04:05Z"  # as DRF writes datetimes
    assert body["webhook"]["delivered_at"] == "2026-01-02T03:04:05.600000Z"
    assert body["assigned_at"] is None
    assert [o["index"] for o in body["outputs"]] == [0, 1, 2]
    assert list(body["outputs_by_name"]) == ["images"]
    assert body["outputs"][1]["url"].endswith(f"/api/jobs/{job.id}/outputs/1")
    assert body["outputs"][0]["type"] == "output"
    assert body["links"]["ws"].startswith("ws") and body["links"]["ws"].endswith(f"/ws/jobs/{job.id}/")
