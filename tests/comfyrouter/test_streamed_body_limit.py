"""Bodies without a declared length are cut off at the limit by the ASGI guard."""

from __future__ import annotations

import asyncio
import json

import pytest

from comfyrouter.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def post_chunks(chunks: list[bytes], path: str = "/api/me") -> tuple[int, dict]:
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("localhost", 80),
             "client": ("127.0.0.1", 5)}  # fmt: skip
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # like a server: the client stays connected

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body or b"{}")


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
