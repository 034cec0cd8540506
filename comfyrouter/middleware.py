from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .errors import body_too_large_message, error_body, error_response


class BodySizeLimitMiddleware:
    """Refuse a declared body above COMFYROUTER_MAX_BODY_BYTES before anything reads it.

    It runs before authentication on purpose: a client is told its body is too big without a
    view (or a parser) ever touching it. Sync, as the whole chain is (comfyrouter/handlers.py).
    """

    sync_capable, async_capable = True, False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        if not raw.isdigit():
            return error_response(
                f"Invalid Content-Length header: {raw!r}.", "bad_request", 400, path=request.path
            )
        length = int(raw)
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return error_response(body_too_large_message(length), "payload_too_large", 413, path=request.path)
        return self.get_response(request)


class StreamedBodyLimit:
    """ASGI guard for bodies that declare no length (chunked): count bytes as they arrive.

    Django's ASGI handler spools a whole body before any middleware runs, so an undeclared body
    must be cut off here. Past the limit the app is told the client left, and the client gets 413.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        received, too_big = 0, False

        async def limited_receive():
            nonlocal received, too_big
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_big = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, limited_receive, send)
        if too_big:
            body = error_body(body_too_large_message(received), "payload_too_large", path=scope.get("path", ""))
            await _send_json(send, 413, body)


async def _send_json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
