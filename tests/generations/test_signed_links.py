"""Signed output links work without credentials, and only until they expire."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from generations.models import Job, JobOutput
from generations.serializers import signed_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def output(user) -> JobOutput:
    job = Job.objects.create(owner=user, state=Job.State.SUCCEEDED)
    record = JobOutput(job=job, index=0, node_id="9", filename="a.png", sha256="0" * 64, size=3)
    record.file.save("a.png", ContentFile(b"png"), save=False)
    record.save()
    return record


def test_a_signed_link_serves_the_file_without_credentials(output, anon_client):
    response = anon_client.get(signed_url(output))

    assert response.status_code == 200
    assert b"".join(response) == b"png"


def test_an_expired_or_forged_link_is_404(output, anon_client, settings):
    url = signed_url(output)
    assert anon_client.get(url[:-2] + "xx").status_code == 404

    settings.COMFYROUTER_SIGNED_URL_TTL = -1

    assert anon_client.get(url).status_code == 404


def test_a_large_file_is_streamed_with_the_same_bytes_and_headers(output, anon_client, monkeypatch):
    small = anon_client.get(signed_url(output))
    monkeypatch.setattr("generations.views.STREAM_FROM_BYTES", 2)  # the 3-byte file is now "large"
    large = anon_client.get(signed_url(output))

    assert large.streaming and not small.streaming
    assert b"".join(large) == b"".join(small) == b"png"
    for header in ("Content-Type", "Content-Disposition"):
        assert large[header] == small[header]
