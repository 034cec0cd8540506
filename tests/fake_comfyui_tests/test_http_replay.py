"""Replay recorded HTTP exchanges (http/*.json) and compare status, content type and body."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fake_comfyui import FakeComfyUI
from tests.fake_comfyui.objectinfo import DATA_DIR

from .traces import PROTOCOL_DIR, http_trace, shape

JSON_TYPE = "application/json; charset=utf-8"
ERROR_500 = "500 Internal Server Error\n\nServer got itself in trouble"


def _send(client: httpx.Client, request: dict, **extra) -> httpx.Response:
    if "raw_body" in request:
        return client.request(request["method"], request["path"], content=request["raw_body"], **extra)
    return client.request(request["method"], request["path"], json=request.get("json"), **extra)


def _assert_like(response: httpx.Response, recorded: dict, label: str) -> None:
    assert response.status_code == recorded["status"], label
    assert response.headers.get("Content-Type") == recorded["headers"].get("Content-Type"), label
    if "json" in recorded:
        assert response.json() == recorded["json"], label
    elif "text" in recorded:
        assert response.text == recorded["text"], label
    else:
        assert response.content == b"", label


def test_validation_errors_match_the_recording_including_numbers() -> None:
    # On a fresh server the recorded numbers line up: rejected posts consume numbers too.
    with FakeComfyUI().start() as fake, httpx.Client(base_url=fake.url) as client:
        for index, exchange in enumerate(http_trace("post_prompt_validation_errors.json")):
            recorded = exchange["response"]
            response = _send(client, exchange["request"])
            if recorded["status"] == 200:
                assert response.status_code == 200
                assert response.json()["node_errors"] == recorded["json"]["node_errors"]
                assert response.json()["number"] == recorded["json"]["number"], index
            else:
                _assert_like(response, recorded, f"case {index}")
        assert fake.prompts_received == 2


@pytest.mark.parametrize("name", ["misc_status_codes.json"])
def test_status_codes_for_bad_bodies_and_methods(fake: FakeComfyUI, name: str) -> None:
    with httpx.Client(base_url=fake.url) as client:
        for exchange in http_trace(name):
            response = _send(client, exchange["request"])
            recorded = exchange["response"]
            label = f"{exchange['request']['method']} {exchange['request']['path']}"
            _assert_like(response, recorded, label)
            assert response.headers.get("Allow") == recorded["headers"].get("Allow"), label


@pytest.mark.parametrize(
    "name",
    [
        "get_prompt_idle.json",
        "get_queue_idle.json",
        "get_history_empty.json",
        "get_history_unknown_id.json",
        "get_object_info_EmptyImage.json",
        "get_object_info_SaveImage.json",
        "get_object_info_LoadImage.json",
        "get_object_info_unknown_class.json",
        "get_system_stats.json",
        "get_features.json",
        "get_embeddings.json",
        "get_extensions.json",
        "get_models.json",
        "get_models_unknown_folder.json",
        "post_queue_clear.json",
        "post_queue_delete.json",
        "post_history_clear.json",
        "post_history_delete.json",
        "post_history_delete_unknown.json",
        "post_interrupt.json",
        "post_free.json",
        "options_prompt.json",
        "get_history_max_items_not_int.json",
    ],
)
def test_simple_exchange_replays(name: str) -> None:
    exchange = http_trace(name)
    with FakeComfyUI(models={}).start() as fake, httpx.Client(base_url=fake.url) as client:
        _assert_like(_send(client, exchange["request"]), exchange["response"], name)


def test_models_checkpoints_is_empty_without_models() -> None:
    exchange = http_trace("get_models_checkpoints.json")
    with FakeComfyUI(models={}).start() as fake:
        _assert_like(httpx.get(fake.url + "/models/checkpoints"), exchange["response"], "checkpoints")


def test_full_object_info_is_byte_identical_without_models() -> None:
    with FakeComfyUI(models={}).start() as fake:
        body = httpx.get(f"{fake.url}/object_info").content
    assert body == (PROTOCOL_DIR / "object_info.json").read_bytes()
    assert body == (DATA_DIR / "object_info.json").read_bytes()


def test_api_prefix_twins_answer_identically(fake: FakeComfyUI) -> None:
    with httpx.Client(base_url=fake.url) as client:
        for case in http_trace("api_prefix_alias_check.json"):
            if "api_path" not in case:
                response = client.get(case["path"])
                assert response.status_code == case["status"], case["path"]
                assert response.headers["Content-Type"] == case["content_type"], case["path"]
                assert response.text == case["body"], case["path"]
                continue
            plain, api = client.get(case["path"]), client.get(case["api_path"])
            assert (plain.status_code, api.status_code) == (case["status"], case["api_status"]), case["path"]
            assert (plain.content == api.content) == case["same_body"], case["path"]


def test_api_prefix_post_routes_work(fake: FakeComfyUI) -> None:
    with httpx.Client(base_url=fake.url) as client:
        for exchange in http_trace("api_prefix_post_routes_check.json"):
            request = exchange["request"]
            if "multipart" in request or "{" in request["path"] or request["path"].startswith("/api/history/"):
                continue
            response = _send(client, request)
            assert response.status_code == exchange["response"]["status"], request["path"]
            if isinstance(exchange["response"].get("json"), dict):
                assert shape(response.json()).keys() == exchange["response"]["json"].keys()


def test_origin_mismatch_is_refused_before_the_handler(fake: FakeComfyUI) -> None:
    exchange = http_trace("post_prompt_origin_mismatch.json")
    host = f"127.0.0.1:{fake.port}"
    response = httpx.post(
        f"{fake.url}/prompt",
        json=exchange["request"]["json"],
        headers={"Origin": "evil.example", "Host": host},
    )
    _assert_like(response, exchange["response"], "origin")
    assert fake.prompts_received == 0
    matching = httpx.get(f"{fake.url}/queue", headers={"Origin": f"http://{host}"})
    assert matching.status_code == 200


def test_queue_item_and_history_prompt_are_5_element_lists(fake: FakeComfyUI) -> None:
    exchange = http_trace("post_prompt_success_with_extra_data.json")
    response = httpx.post(f"{fake.url}/prompt", json=exchange["request"]["json"])
    prompt_id = response.json()["prompt_id"]
    fake.wait_idle()
    entry = httpx.get(f"{fake.url}/history/{prompt_id}").json()[prompt_id]
    recorded = next(iter(http_trace("get_history_with_extra_data.json")["response"]["json"].values()))
    assert entry["prompt"][3] == recorded["prompt"][3]
    assert shape(entry) == shape(recorded)
    assert json.dumps(list(entry)) == json.dumps(list(recorded))
