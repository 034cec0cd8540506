"""Errors on /v1 in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.

The status decides which exception the `openai` SDK raises (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 429 RateLimitError, 5xx InternalServerError). The SDK
retries 429 and 5xx by itself; `x-should-retry: false` stops it re-running a job that failed for
a reason another attempt would not change.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from comfyrouter.errors import as_api_exception

log = logging.getLogger(__name__)

TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}


class OpenAIError(Exception):
    """An error answered on /v1: status, message, and OpenAI's type, param and code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    @property
    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def upstream_failure(status: int, message: str, code: str) -> OpenAIError:
    return OpenAIError(status, message, code=code, headers={"x-should-retry": "false"})


def from_exception(exc: Exception) -> OpenAIError | None:
    """The OpenAI error for what a view, DRF or Django raised; None for a bug."""
    if isinstance(exc, OpenAIError):
        return exc
    exc = as_api_exception(exc)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return OpenAIError(401, str(exc.detail), code="invalid_api_key")
    if isinstance(exc, exceptions.ValidationError):
        param, message = first_problem(exc.detail)
        return bad_request(message, param, code="invalid_value")
    if isinstance(exc, exceptions.ParseError):
        return bad_request(str(exc.detail), code="invalid_json")
    if isinstance(exc, exceptions.Throttled):
        return OpenAIError(429, str(exc.detail), code="rate_limit_exceeded")
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes()
        return OpenAIError(exc.status_code, str(exc.detail), code=code if isinstance(code, str) else None)
    return None


def first_problem(detail: Any) -> tuple[str | None, str]:
    """(param, message) of a DRF ValidationError: the first field named, every problem told."""
    if not isinstance(detail, dict):
        return None, " ".join(map(str, detail)) if isinstance(detail, list) else str(detail)
    messages = [f"Invalid '{field}': {' '.join(map(str, errors))}" for field, errors in detail.items()]
    param = next(iter(detail), None)
    return (None if param == "non_field_errors" else param), " ".join(messages)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER for /v1 views."""
    exc = as_api_exception(exc)
    error = from_exception(exc)
    if error is None:
        return None
    response = Response(error.body, status=error.status, headers=error.headers)
    if isinstance(exc, exceptions.APIException) and getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait))
    return response


def error_response(error: OpenAIError) -> JsonResponse:
    return JsonResponse(error.body, status=error.status, headers=error.headers)


def unexpected(exc: Exception) -> JsonResponse:
    log.exception("unexpected error on /v1", exc_info=exc)
    return error_response(OpenAIError(500, "Internal server error; details are in the server log."))
