from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .errors import body_too_large_message, error_response


class BodySizeLimitMiddleware:
    """Refuse a declared body above COMFYROUTER_MAX_BODY_BYTES before anything reads it.

    It runs before authentication on purpose: a client is told its body is too big without a
    view (or a parser) ever touching it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        if not raw.isdigit():
            return error_response(f"Invalid Content-Length header: {raw!r}.", "bad_request", 400)
        length = int(raw)
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return error_response(body_too_large_message(length), "payload_too_large", 413)
        return self.get_response(request)
