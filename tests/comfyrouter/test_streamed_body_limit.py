"""Bodies without a declared length are cut off at the limit by the ASGI guard."""

from __future__ import annotations

import pytest

from comfyrouter.asgi import application
from tests.asgi import asgi_request

pytestmark = pytest.mark.django_db(transaction=True)


async def post_chunks(chunks: list[bytes], path: str = "/api/me") -> tuple[int, dict]:
    return await asgi_request(application, path, method="POST", chunks=chunks, content_type="application/json")


async def test_a_chunked_body_over_the_limit_gets_413(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    status, body = await post_chunks([b"x" * 600, b"x" * 600, b"x" * 600])

    assert status == 413
    assert body["code"] == "payload_too_large" and "COMFYROUTER_MAX_BODY_BYTES" in body["detail"]


async def test_a_chunked_body_under_the_limit_reaches_the_view(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    status, _ = await post_chunks([b"{", b"}"])

    assert status == 401  # the view ran: it wants credentials


async def test_an_oversized_body_on_the_openai_api_gets_openais_error_shape(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    status, body = await post_chunks([b"x" * 2000], path="/v1/images/generations")

    assert status == 413
    assert body["error"]["code"] == "payload_too_large" and body["error"]["type"] == "invalid_request_error"


def test_a_declared_oversized_body_on_the_openai_api_gets_openais_error_shape(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    response = client.post("/v1/images/generations", b"x" * 2000, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
