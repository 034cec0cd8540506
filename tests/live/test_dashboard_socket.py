"""/ws/dashboard/ over a real Daphne socket: staff only; a fleet snapshot, then node and job changes."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from nodes.services import node_drain
from tests.generations.conftest import register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_without_a_staff_session_the_dashboard_socket_is_refused(daphne, user):
    async def attempt():
        async with connect(daphne.ws("/ws/dashboard/"), origin=daphne.url) as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == 403


def test_staff_get_the_fleet_then_node_status_changes(daphne, fakes, staff_session):
    node = register(fakes(), "gpu-a")

    async def watch():
        headers = {"Cookie": f"sessionid={staff_session}"}
        async with connect(daphne.ws("/ws/dashboard/"), origin=daphne.url, additional_headers=headers) as ws:
            first = [json.loads(await ws.recv()) for _ in range(2)]
            await asyncio.to_thread(node_drain, node=node)
            async with asyncio.timeout(10):
                while (message := json.loads(await ws.recv()))["type"] != "node.status":
                    pass
            return first, message

    (fleet, jobs), change = asyncio.run(watch())

    assert fleet["type"] == "fleet" and [n["name"] for n in fleet["nodes"]] == ["gpu-a"]
    assert fleet["nodes"][0]["status"] == "idle" and fleet["queue"]["length"] == 0
    assert jobs == {"type": "jobs", "jobs": []}
    expected = {"type": "node.status", "node_id": node.id, "name": "gpu-a", "old": "idle", "status": "draining"}
    assert change == expected
