from __future__ import annotations

from celery import shared_task

from nodes.services import node_check_all


@shared_task(ignore_result=True)
def check_nodes() -> int:
    """Beat, every COMFYROUTER_HEALTH_INTERVAL s: check every enabled node (in parallel)."""
    return len(node_check_all())
