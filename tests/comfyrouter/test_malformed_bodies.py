"""Malformed request bodies get a 4xx with a precise JSON message on every route, never a 500.

The routes come from the same walk as the auth test, so routes added later are covered. The
admin is skipped: its forms are HTML with CSRF, not an API. A probe view in this module's own
URLconf runs the same cases, so the checks are exercised even while few routes take a body.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import RequestDataTooBig, SuspiciousFileOperation, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import UnreadablePostError
from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from comfyrouter import urls as root_urls
from comfyrouter.errors import exception_handler
from tests.comfyrouter.test_url_auth_walk import BODY_METHODS, ROUTES, Route

pytestmark = pytest.mark.django_db

LIMIT = 1024
# Route patterns whose views read no body on purpose, so a malformed one is harmless.
IGNORES_BODY: set[str] = set()

# name: (body, content type, acceptable statuses, a word the message must contain)
CASES: dict[str, tuple[bytes, str, set[int], str]] = {
    "invalid-json": (b"{", "application/json", {400}, "json"),
    "json-array": (b"[]", "application/json", {400}, ""),
    "json-string": (b'"x"', "application/json", {400}, ""),
    "json-number": (b"123", "application/json", {400}, ""),
    "json-null": (b"null", "application/json", {400}, ""),
    "non-utf8": (b'{"prompt": "\xff\xfe"}', "application/json", {400}, "utf-8"),
    "huge": (b'{"prompt": "' + b"a" * 2 * LIMIT + b'"}', "application/json", {413}, "limit"),
    "text-plain": (b"a cat in a hat", "text/plain", {415}, "media type"),
    "xml": (b"<prompt>cat</prompt>", "application/xml", {415}, "media type"),
    "multipart-without-boundary": (b"--x--", "multipart/form-data", {400, 415}, ""),
}


def body_targets() -> list[tuple[Route, str]]:
    targets = []
    for route in ROUTES:
        if route.path is None or route.is_admin or route.pattern in IGNORES_BODY:
            continue
        methods = route.methods()
        targets += [(route, m) for m in BODY_METHODS if methods is None or m in methods]
    return targets


def strings_in(data: object) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        data = list(data.values())
    if isinstance(data, list):
        return [text for item in data for text in strings_in(item)]
    return []


def assert_precise_refusal(response, case: str, *, also: set[int] = frozenset()) -> None:
    _, _, statuses, word = CASES[case]
    where = f"{response.request['REQUEST_METHOD']} {response.request['PATH_INFO']} [{case}]"
    got = f"{where}: {response.status_code} {response.content[:300]!r}"
    assert response.status_code in statuses | also, got
    assert response["Content-Type"].startswith("application/json"), f"{where}: {response['Content-Type']}"
    body = response.json()
    assert any(len(text) >= 10 for text in strings_in(body)), f"{where}: no message in {body}"
    if response.status_code in statuses:
        assert word in json.dumps(body, ensure_ascii=False).lower(), f"{where}: {word!r} not in {body}"


def send(client: APIClient, method: str, path: str, case: str):
    body, content_type, _, _ = CASES[case]
    return client.generic(method, path, body, content_type=content_type)


@pytest.fixture(autouse=True)
def small_body_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "route,method", body_targets(), ids=lambda value: value.path if isinstance(value, Route) else value
)
def test_route_refuses_a_malformed_body_precisely(route: Route, method: str, case: str, operator_client):
    response = send(operator_client, method, route.path, case)

    if route.methods() is None and response.status_code == 405:
        return  # a plain function view: whether it takes this method is only known by asking
    # A path with parameters names objects that do not exist here; a 404 for them is precise too.
    has_params = "<" in route.pattern or "(?P" in route.pattern
    assert_precise_refusal(response, case, also={404} if has_params else set())


# The probe: a view shaped like the real ones, in this module's URLconf.
class ProbeInput(serializers.Serializer):
    prompt = serializers.CharField()
    steps = serializers.IntegerField(min_value=1, max_value=150)


class ProbeApi(APIView):
    def post(self, request: Request) -> Response:
        data = ProbeInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data, status=201)

    put = patch = post


class CrashApi(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug")


urlpatterns = [path("probe", ProbeApi.as_view()), path("crash", CrashApi.as_view())]
handler404, handler500 = root_urls.handler404, root_urls.handler500


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("method", BODY_METHODS)
@pytest.mark.parametrize("case", CASES)
def test_probe_refuses_every_malformed_body_precisely(case: str, method: str, operator_client):
    assert_precise_refusal(send(operator_client, method, "/probe", case), case)


@pytest.mark.urls(__name__)
def test_probe_accepts_a_good_body(operator_client):
    response = operator_client.post("/probe", {"prompt": "a cat", "steps": 20}, format="json")

    assert response.status_code == 201


@pytest.mark.urls(__name__)
def test_probe_names_the_fields_that_are_wrong(operator_client):
    response = operator_client.post("/probe", {"prompt": "a cat", "steps": "many"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"steps": ["A valid integer is required."]}


@pytest.mark.urls(__name__)
def test_an_oversized_multipart_field_is_413_even_without_the_middleware(operator_client, settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "BodySizeLimit" not in m]

    response = operator_client.post("/probe", {"prompt": "a" * 4 * LIMIT, "steps": 1}, format="multipart")

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert f"limit of {LIMIT} bytes" in response.json()["detail"]


def test_an_invalid_content_length_is_a_json_400(operator_client):
    response = operator_client.generic("POST", "/api/me", b"{}", "application/json", CONTENT_LENGTH="ten")

    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid Content-Length header: 'ten'.", "code": "bad_request"}


@pytest.mark.parametrize(
    "exc,status,expected",
    [
        (RequestDataTooBig("x"), 413, {"code": "payload_too_large"}),
        (UnreadablePostError("connection reset"), 400, {"code": "bad_request"}),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 400, {"code": "parse_error"}),
        (TooManyFieldsSent("Too many GET/POST parameters."), 400, {"code": "bad_request"}),
        (SuspiciousFileOperation("Detected path traversal in /etc/passwd"), 400, {"detail": "Bad request."}),
        (DjangoValidationError({"steps": ["Too many steps."]}), 400, {"steps": ["Too many steps."]}),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_django_input_errors_become_4xx_in_drf_shape(exc: Exception, status: int, expected: dict):
    response = exception_handler(exc, {})

    assert response is not None and response.status_code == status
    assert expected.items() <= response.data.items()
    assert "/etc/passwd" not in str(response.data)


def test_a_busy_or_unreachable_database_is_a_503_with_retry_after(settings):
    response = exception_handler(OperationalError("database is locked: ..."), {})

    assert response is not None and response.status_code == 503
    assert response.data["code"] == "database_unavailable" and "retry in" in response.data["detail"]
    assert response["Retry-After"] == str(settings.COMFYROUTER_RETRY_AFTER)
    assert "locked" not in str(response.data)


def test_other_exceptions_are_left_to_django():
    assert exception_handler(RuntimeError("a bug"), {}) is None


def test_an_unknown_api_path_is_a_json_404(anon_client):
    response = anon_client.get("/api/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {"detail": "No route matches GET /api/no-such-thing.", "code": "not_found"}


def test_browsers_still_get_the_html_404_page(anon_client):
    response = anon_client.get("/no-such-page", HTTP_ACCEPT="text/html,application/xhtml+xml")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.urls(__name__)
def test_a_crash_answers_api_clients_in_json(operator):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(operator)

    response = client.get("/crash")

    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
