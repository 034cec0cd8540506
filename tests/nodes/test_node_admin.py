"""The node admin: fleet columns, actions, and the same check as the API when a node is added or moved."""

from __future__ import annotations

import socket

import pytest
from django.test import Client

from nodes.models import Node
from nodes.services import node_update

pytestmark = pytest.mark.django_db

TOKEN = "tok-admin-4d2e-never-shown"
HEADER_SECRET = "hdr-admin-93aa-never-shown"
CHANGELIST = "/admin/nodes/node/"


@pytest.fixture
def admin_client(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def form(**fields) -> dict[str, str]:
    data = {"name": "gpu-a", "base_url": "", "capacity": "2", "auth_token": "", "new_extra_headers": ""}
    data["enabled"] = "on"
    return {**data, **fields}


def act(client: Client, action: str, *nodes: Node):
    data = {"action": action, "_selected_action": [str(n.id) for n in nodes]}
    return client.post(CHANGELIST, data, follow=True)


def test_the_list_shows_status_slots_gpu_vram_version_and_last_seen(admin_client, node):
    Node.objects.filter(id=node.id).update(running=1)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "idle" in page and "1 / 2" in page
    assert "cpu" in page and "0.3.64" in page and " GB" in page
    assert "Check now" in page and "Drain" in page and "Resume" in page


def test_check_now_records_the_result_of_each_node(admin_client, node, fake_comfy):
    fake_comfy.crash()
    page = act(admin_client, "check_now", node).content.decode()
    assert f"could not connect to {fake_comfy.url}: connection refused" in page
    assert Node.objects.get(id=node.id).consecutive_failures == 1
    fake_comfy.restart()
    act(admin_client, "check_now", node)
    assert Node.objects.get(id=node.id).consecutive_failures == 0


def test_drain_and_resume_actions(admin_client, node):
    act(admin_client, "drain", node)
    assert Node.objects.get(id=node.id).status == Node.Status.DRAINING
    act(admin_client, "resume", node)
    assert Node.objects.get(id=node.id).status == Node.Status.IDLE


def test_adding_an_unreachable_node_shows_the_error_on_the_form(admin_client, dead_url):
    response = admin_client.post(f"{CHANGELIST}add/", form(base_url=dead_url))
    assert response.status_code == 200
    assert f"could not connect to {dead_url}: connection refused" in response.content.decode()
    assert not Node.objects.exists()


def test_adding_a_node_checks_it_and_records_its_health(admin_client, fake_comfy):
    fake_comfy.configure(require_token=TOKEN)
    response = admin_client.post(f"{CHANGELIST}add/", form(base_url=fake_comfy.url))
    assert "the node refused our credentials" in response.content.decode()
    response = admin_client.post(
        f"{CHANGELIST}add/",
        form(base_url=fake_comfy.url, auth_token=TOKEN, new_extra_headers=f"X-Pod-Key: {HEADER_SECRET}"),
    )
    assert response.status_code == 302
    node = Node.objects.get()
    assert node.status == Node.Status.IDLE and node.health["comfyui_version"] == "0.3.64"
    assert node.request_headers() == {"X-Pod-Key": HEADER_SECRET, "Authorization": f"Bearer {TOKEN}"}


def test_the_change_form_never_shows_credentials_and_keeps_them_when_left_empty(admin_client, node, fake_comfy):
    node_update(node=node, auth_token=TOKEN, extra_headers={"X-Pod-Key": HEADER_SECRET})
    page = admin_client.get(f"{CHANGELIST}{node.id}/change/").content.decode()
    assert TOKEN not in page and HEADER_SECRET not in page and "X-Pod-Key" in page
    fake_comfy.crash()  # editing the capacity needs no check: the node may be down
    response = admin_client.post(
        f"{CHANGELIST}{node.id}/change/", form(name=node.name, base_url=node.base_url, capacity="4")
    )
    assert response.status_code == 302
    saved = Node.objects.get(id=node.id)
    assert (
        saved.capacity == 4 and saved.auth_token == TOKEN and saved.extra_headers == {"X-Pod-Key": HEADER_SECRET}
    )


def test_moving_a_node_to_a_dead_address_is_refused(admin_client, node, dead_url):
    response = admin_client.post(f"{CHANGELIST}{node.id}/change/", form(name=node.name, base_url=dead_url))
    assert f"could not connect to {dead_url}: connection refused" in response.content.decode()
    assert Node.objects.get(id=node.id).base_url == node.base_url


def test_clearing_credentials(admin_client, node):
    node_update(node=node, auth_token="", extra_headers={"X-Pod-Key": HEADER_SECRET})
    form_data = form(name=node.name, base_url=node.base_url, clear_credentials="on")
    assert admin_client.post(f"{CHANGELIST}{node.id}/change/", form_data).status_code == 302
    saved = Node.objects.get(id=node.id)
    assert saved.auth_token == "" and saved.extra_headers == {}
