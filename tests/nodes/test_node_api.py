"""/api/nodes/: staff-only node management; a node is checked before it is registered."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nodes.models import Node

pytestmark = pytest.mark.django_db

TOKEN = "tok-7f3a9c-never-shown"
HEADER_SECRET = "hdr-51be02-never-shown"


class NotComfy(BaseHTTPRequestHandler):
    """Any other HTTP server: answers `reply` (status, body) and remembers the headers it got."""

    reply: tuple[int, bytes] = (404, b"")
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        status, body = self.reply
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(reply: tuple[int, bytes]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Handler", (NotComfy,), {"reply": reply, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def not_found_server():
    yield from serve((404, b""))


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def add(client, **data):
    return client.post("/api/nodes/", data, format="json")


def test_an_operator_adds_a_node_and_it_is_checked_at_once(operator_client, fake_comfy):
    response = add(operator_client, name="gpu-1", base_url=fake_comfy.url + "/", capacity=3)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "gpu-1" and body["base_url"] == fake_comfy.url and body["capacity"] == 3
    assert body["status"] == "idle" and body["running"] == 0 and body["has_auth_token"] is False
    assert body["health"]["comfyui_version"] == "0.3.64"
    assert "tiny-sd15-random.ckpt" in body["health"]["models"]["checkpoints"]
    assert body["health"]["models"]["loras"] == ["example_lora.safetensors"]
    assert operator_client.get("/api/nodes/").json()[0]["id"] == body["id"]


def test_adding_an_unreachable_node_says_the_connection_was_refused(operator_client, dead_url):
    response = add(operator_client, name="gone", base_url=dead_url)
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"could not connect to {dead_url}: connection refused",
        "code": "node_check_failed",
    }
    assert not Node.objects.exists()


@pytest.mark.parametrize(
    "reply",
    [(404, b""), (200, json.dumps({"hello": "world"}).encode()), (200, b"[1, 2]"), (200, b"<html></html>")],
    ids=["404", "unrelated-json", "json-list", "html"],
)
def test_a_server_that_is_not_comfyui_is_refused(operator_client, reply):
    for url, _ in serve(reply):
        response = add(operator_client, name="web", base_url=url)
        assert response.status_code == 400
        assert response.json()["detail"].startswith(f"{url} is not a ComfyUI server: ")
    assert not Node.objects.exists()


def test_a_token_protected_node_is_refused_without_the_token_and_added_with_it(operator_client, fake_comfy):
    fake_comfy.configure(require_token=TOKEN)
    response = add(operator_client, name="locked", base_url=fake_comfy.url)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("the node refused our credentials (401 from ")
    fake_comfy.reset_stats()
    response = add(operator_client, name="locked", base_url=fake_comfy.url, auth_token=TOKEN)
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "idle"
    # The fake answers 401 to any call without `Authorization: Bearer <token>`: every call carried it.
    assert fake_comfy.requests_per_path["/system_stats"] == 1
    assert Node.objects.get().request_headers() == {"Authorization": f"Bearer {TOKEN}"}


def test_extra_headers_are_sent_to_the_node(operator_client, not_found_server):
    url, seen = not_found_server
    add(
        operator_client,
        name="pod",
        base_url=url,
        auth_token=TOKEN,
        extra_headers={"X-Pod-Key": HEADER_SECRET},
    )
    assert seen[0]["X-Pod-Key"] == HEADER_SECRET and seen[0]["Authorization"] == f"Bearer {TOKEN}"


def test_credentials_never_appear_in_any_response(operator_client, fake_comfy):
    created = add(
        operator_client,
        name="secret",
        base_url=fake_comfy.url,
        auth_token=TOKEN,
        extra_headers={"X-Pod-Key": HEADER_SECRET},
    )
    assert created.status_code == 201, created.json()
    node_id = created.json()["id"]
    responses = [
        created,
        operator_client.get("/api/nodes/"),
        operator_client.get(f"/api/nodes/{node_id}"),
        operator_client.patch(f"/api/nodes/{node_id}", {"capacity": 4}, format="json"),
        operator_client.post(f"/api/nodes/{node_id}/check"),
        operator_client.post(f"/api/nodes/{node_id}/drain"),
        operator_client.post(f"/api/nodes/{node_id}/resume"),
        operator_client.get("/api/schema/"),
    ]
    for response in responses:
        assert response.status_code == 200 or response.status_code == 201
        assert TOKEN not in response.content.decode() and HEADER_SECRET not in response.content.decode()
    detail = responses[2].json()
    assert detail["has_auth_token"] is True and detail["extra_header_names"] == ["X-Pod-Key"]
    assert "auth_token" not in detail and "extra_headers" not in detail


def test_non_staff_get_403_and_anonymous_callers_401(api_client, anon_client, node):
    for client, status in ((api_client, 403), (anon_client, 401)):
        assert client.get("/api/nodes/").status_code == status
        assert client.get(f"/api/nodes/{node.id}").status_code == status
        assert add(client, name="x", base_url="http://127.0.0.1:1").status_code == status
        assert client.post(f"/api/nodes/{node.id}/drain").status_code == status
        assert client.delete(f"/api/nodes/{node.id}").status_code == status
    assert Node.objects.get(id=node.id).status == Node.Status.IDLE


def test_drain_keeps_new_jobs_away_and_resume_brings_them_back(operator_client, node):
    response = operator_client.post(f"/api/nodes/{node.id}/drain")
    assert response.status_code == 200 and response.json()["status"] == "draining"
    assert not Node.objects.dispatchable().exists()
    response = operator_client.post(f"/api/nodes/{node.id}/resume")
    assert response.status_code == 200 and response.json()["status"] == "idle"
    assert list(Node.objects.dispatchable()) == [node]


def test_check_now_records_a_failure_without_failing_the_request(operator_client, node, fake_comfy):
    fake_comfy.crash()
    response = operator_client.post(f"/api/nodes/{node.id}/check")
    assert response.status_code == 200
    body = response.json()
    assert body["consecutive_failures"] == 1
    assert body["last_error"] == f"could not connect to {fake_comfy.url}: connection refused"
    fake_comfy.restart()
    body = operator_client.post(f"/api/nodes/{node.id}/check").json()
    assert body["consecutive_failures"] == 0 and body["last_error"] == "" and body["status"] == "idle"


def test_capacity_and_name_can_be_edited_while_the_node_is_down(operator_client, node, fake_comfy):
    fake_comfy.crash()
    response = operator_client.patch(f"/api/nodes/{node.id}", {"capacity": 5, "name": "renamed"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["capacity"] == 5 and response.json()["name"] == "renamed"


def test_a_misspelt_field_is_refused_and_nothing_changes(operator_client, node):
    response = operator_client.patch(f"/api/nodes/{node.id}", {"capcity": 5}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "capcity": ["Unknown field: this body takes name, base_url, capacity, auth_token, extra_headers, enabled."]
    }
    assert Node.objects.get(id=node.id).capacity == node.capacity


def test_a_new_address_is_checked_before_it_is_saved(operator_client, node, dead_url):
    response = operator_client.patch(f"/api/nodes/{node.id}", {"base_url": dead_url}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == f"could not connect to {dead_url}: connection refused"
    assert Node.objects.get(id=node.id).base_url == node.base_url


def test_a_wrong_token_is_refused_on_edit_and_a_right_one_saved(operator_client, node, fake_comfy):
    fake_comfy.configure(require_token=TOKEN)
    response = operator_client.patch(f"/api/nodes/{node.id}", {"auth_token": "wrong"}, format="json")
    assert response.status_code == 400 and "refused our credentials" in response.json()["detail"]
    response = operator_client.patch(f"/api/nodes/{node.id}", {"auth_token": TOKEN}, format="json")
    assert response.status_code == 200 and response.json()["has_auth_token"] is True
    assert Node.objects.get(id=node.id).auth_token == TOKEN


def test_bad_input_is_refused_with_field_errors(operator_client, node):
    response = add(operator_client, name=node.name, base_url="ftp://x", capacity=0, extra_headers={"Host": "x"})
    assert response.status_code == 400
    assert set(response.json()) >= {"name", "base_url", "capacity", "extra_headers"}


def test_delete_removes_an_idle_node_and_refuses_one_holding_jobs(operator_client, node):
    Node.objects.filter(id=node.id).update(running=1)
    response = operator_client.delete(f"/api/nodes/{node.id}")
    assert response.status_code == 409 and "drain it" in response.json()["detail"]
    Node.objects.filter(id=node.id).update(running=0)
    assert operator_client.delete(f"/api/nodes/{node.id}").status_code == 204
    assert not Node.objects.exists()
    assert operator_client.get(f"/api/nodes/{node.id}").status_code == 404
