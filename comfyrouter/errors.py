"""Errors in DRF's shape, `{"detail": ..., "code": ...}`, for everything an API client can hit.

`exception_handler` is DRF's EXCEPTION_HANDLER: it also turns what Django raises while a view
reads a bad body into 4xx. The `handler*` views answer Django's own 400/403/404/500 (no URL
matched, a crash) in JSON for API clients and as the usual pages for browsers.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "database_unavailable"

    def __init__(self) -> None:
        self.wait = settings.COMFYROUTER_RETRY_AFTER
        super().__init__(f"The database is busy or unreachable; retry in {self.wait} s.")


class BadRequestError(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad request."
    default_code = "bad_request"


def body_too_large_message(size: int | None = None) -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    what = f"Request body of {size} bytes" if size is not None else "Request body"
    return f"{what} exceeds the limit of {limit} bytes (COMFYROUTER_MAX_BODY_BYTES)."


def as_api_exception(exc: Exception) -> Exception:
    """The DRF exception for what Django raises on bad input or an unavailable database; anything else
    unchanged."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(body_too_large_message())
    if isinstance(exc, UnicodeDecodeError):
        return exceptions.ParseError(
            f"Request contains bytes that are not valid {exc.encoding}: {exc.reason} at position {exc.start}."
        )
    if isinstance(exc, UnreadablePostError):
        return BadRequestError(f"The request body could not be read: {exc}.")
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, BadRequest | TooManyFieldsSent | TooManyFilesSent):
        return BadRequestError(str(exc) or None)
    if isinstance(exc, OperationalError):
        # A writer timed out behind others, or the database server is down: the client may retry (a run
        # with an Idempotency-Key safely). The cause is logged: it may also be a bug.
        log.error("database error answered 503: %s", exc, exc_info=exc)
        return DatabaseUnavailable()
    if isinstance(exc, SuspiciousOperation):
        # Other suspicious operations (e.g. storage path traversal) may name server paths.
        return BadRequestError()
    return exc


def exception_handler(exc: Exception, context: dict) -> Response | None:
    response = drf_exception_handler(as_api_exception(exc), context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data["code"] = getattr(response.data["detail"], "code", None)
    return response


OPENAI_PREFIX = "/v1/"


def error_body(detail: str, code: str, *, path: str = "") -> dict:
    """An error in the API's own shape: OpenAI's under /v1/, DRF's everywhere else."""
    if path.startswith(OPENAI_PREFIX):
        return {"error": {"message": detail, "type": "invalid_request_error", "param": None, "code": code}}
    return {"detail": detail, "code": code}


def error_response(detail: str, code: str, status_code: int, *, path: str = "") -> JsonResponse:
    return JsonResponse(error_body(detail, code, path=path), status=status_code)


def wants_json(request: HttpRequest) -> bool:
    """API clients get JSON; a browser (asking for HTML) and the admin get pages."""
    if request.path.startswith("/admin/"):
        return False
    return "text/html" not in request.headers.get("Accept", "")


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not wants_json(request):
        return defaults.bad_request(request, exception)
    api_exc = as_api_exception(exception) if exception is not None else None
    if not isinstance(api_exc, exceptions.APIException):
        api_exc = BadRequestError()
    return error_response(str(api_exc.detail), api_exc.detail.code, api_exc.status_code)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if wants_json(request):
        return error_response("You do not have permission to perform this action.", "permission_denied", 403)
    return defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if wants_json(request):
        return error_response(f"No route matches {request.method} {request.path}.", "not_found", 404)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if wants_json(request):
        return error_response("Internal server error; details are in the server log.", "server_error", 500)
    return defaults.server_error(request)
