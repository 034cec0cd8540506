"""The pages' HTTP side: who may open them, the output files by job id, and the links into them."""

from __future__ import annotations

import uuid

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from generations.models import Job, JobOutput
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(user):
    job = Job.objects.create(owner=user, state=Job.State.SUCCEEDED, prompt={})
    output = JobOutput(job=job, index=0, node_id="9", filename="cat.png", sha256="0" * 64, size=4)
    output.file.save("cat.png", ContentFile(b"\x89PNG"), save=True)
    return job


def test_the_dashboard_sends_visitors_and_non_staff_to_the_admin_login(user):
    client = Client()
    assert client.get("/")["Location"].startswith("/admin/login/?next=/")
    client.login(username=user.username, password=PASSWORD)
    assert client.get("/")["Location"].startswith("/admin/login/")


def test_staff_get_the_dashboard(operator):
    client = Client()
    client.force_login(operator)
    page = client.get("/")
    assert page.status_code == 200 and b'id="dashboard"' in page.content


def test_the_job_page_needs_only_the_job_id(finished_job):
    page = Client().get(f"/jobs/{finished_job.id}/")

    assert page.status_code == 200
    assert f'data-job-id="{finished_job.id}"'.encode() in page.content
    assert f'href="/jobs/{finished_job.id}/outputs/0?download=1"'.encode() in page.content
    assert Client().get(f"/jobs/{uuid.uuid4()}/").status_code == 404


def test_output_files_are_served_by_job_id_inline_or_as_a_download(finished_job):
    inline = Client().get(f"/jobs/{finished_job.id}/outputs/0")
    download = Client().get(f"/jobs/{finished_job.id}/outputs/0?download=1")

    assert inline.status_code == 200 and b"".join(inline) == b"\x89PNG"
    assert inline["Content-Type"] == "image/png" and inline["Content-Disposition"].startswith("inline")
    assert download["Content-Disposition"] == 'attachment; filename="cat.png"'
    assert Client().get(f"/jobs/{finished_job.id}/outputs/1").status_code == 404


def test_the_job_json_and_the_admin_link_to_the_page(finished_job, operator, operator_client):
    assert (
        operator_client.get(f"/api/jobs/{finished_job.id}")
        .json()["links"]["page"]
        .endswith(f"/jobs/{finished_job.id}/")
    )
    admin = Client()
    admin.force_login(operator)
    change = admin.get(f"/admin/generations/job/{finished_job.id}/change/")
    assert f'href="/jobs/{finished_job.id}/"'.encode() in change.content
