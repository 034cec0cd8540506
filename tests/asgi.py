"""Drive an ASGI app in-process, the way a server would: one HTTP request, its chunks, the answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any


async def asgi_request(
    app: Any, path: str, *, method: str = "GET", chunks: Sequence[bytes] = (b"",), content_type: str = ""
) -> tuple[int, Any]:
    """The status and JSON body (`{}` when empty) of one request; the body arrives in `chunks`."""
    headers = [(b"host", b"localhost")] + ([(b"content-type", content_type.encode())] if content_type else [])
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("localhost", 80),
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

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body or b"{}")
