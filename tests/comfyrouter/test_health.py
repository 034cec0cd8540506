from __future__ import annotations

import pytest

from nodes.models import Node

pytestmark = pytest.mark.django_db


def test_health_reports_db_redis_and_node_counts_without_auth(anon_client):
    Node.objects.create(name="a", base_url="http://127.0.0.1:1", status=Node.Status.IDLE)
    Node.objects.create(name="b", base_url="http://127.0.0.1:2", status=Node.Status.OFFLINE)

    response = anon_client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["db"] == "ok" and body["redis"] == "ok" and body["status"] == "ok"
    assert body["nodes"] == {"idle": 1, "busy": 0, "offline": 1, "draining": 0}
