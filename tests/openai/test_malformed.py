"""Raw HTTP requests the SDK would never send still get OpenAI-shaped 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

GENERATIONS = "/v1/images/generations"


def send(server: str, key: str, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{server}{path}", headers=headers, timeout=30, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "x" * 32_001}, "prompt"),
        ({"prompt": "x", "n": "two"}, "n"),
        ({"prompt": "x", "n": 1.5}, "n"),
        ({"prompt": "x", "stream": "maybe"}, "stream"),
        ({"prompt": "x", "size": 512}, "size"),
        ({"prompt": "x", "model": {"id": "sd15-txt2img"}}, "model"),
        ({}, "prompt"),
        (None, "prompt"),  # an empty body is an empty request
    ],
)
def test_wrong_types_are_400_naming_the_param(server, key, body, param):
    assert_openai_error(send(server, key, "POST", GENERATIONS, json=body), 400, param)


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'"a string"', b"\xff\xfe{}", b'{"prompt": "x"} trailing', b"null"]
)
def test_malformed_json_is_a_400(server, key, content):
    response = send(
        server, key, "POST", GENERATIONS, content=content, headers={"Content-Type": "application/json"}
    )

    assert_openai_error(response, 400)


def test_an_unsupported_content_type_is_a_415(server, key):
    response = send(server, key, "POST", GENERATIONS, content=b"prompt=x", headers={"Content-Type": "text/plain"})

    assert_openai_error(response, 415)


def test_edits_sent_as_json_are_a_400_about_the_image(server, key):
    assert_openai_error(send(server, key, "POST", "/v1/images/edits", json={"prompt": "x"}), 400, "image")


@pytest.mark.parametrize(
    ("method", "path", "status", "param"),
    [("GET", "/v1/nope", 404, None), ("POST", "/v1/images/variations", 404, None), ("GET", GENERATIONS, 405, None),
     ("GET", "/v1/models/nope", 404, "model"), ("DELETE", "/v1/models/sd15-txt2img", 405, None)],
)  # fmt: skip
def test_unknown_routes_and_methods_answer_in_openai_shape(server, key, method, path, status, param):
    assert_openai_error(send(server, key, method, path), status, param)


def test_no_credentials_is_a_401(server):
    response = httpx.post(f"{server}{GENERATIONS}", json={"prompt": "x"})

    assert assert_openai_error(response, 401)["code"] == "invalid_api_key"
