"""What the live pages draw: job and fleet snapshots as JSON (async ORM), and the coalescing outbox."""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from generations.models import Job, JobOutput
from nodes.models import Node

RECENT_JOBS = 20
QUEUE_SHOWN = 20
RATE_WINDOW_MINUTES = 10


def output_path(job_id: Any, index: int) -> str:
    return f"/jobs/{job_id}/outputs/{index}"


def node_title(job: Job, node_id: str) -> str:
    node = (job.prompt or {}).get(node_id) or {}
    return (node.get("_meta") or {}).get("title", "") if isinstance(node, dict) else ""


async def queue_position(job: Job) -> int | None:
    """Queued jobs ahead of this one (higher priority, or same priority and older); None unless queued."""
    if job.state != Job.State.QUEUED:
        return None
    ahead = Q(priority__gt=job.priority) | Q(priority=job.priority, created_at__lt=job.created_at)
    return await Job.objects.queued().filter(ahead).acount()


def output_json(output: JobOutput) -> dict[str, Any]:
    url = output_path(output.job_id, output.index)
    return {"index": output.index, "filename": output.filename, "node_title": output.node_title,
            "content_type": output.content_type, "width": output.width, "height": output.height,
            "size": output.size, "url": url, "download_url": f"{url}?download=1"}  # fmt: skip


async def outputs_json(job: Job) -> list[dict[str, Any]]:
    return [output_json(output) async for output in JobOutput.objects.filter(job_id=job.id).order_by("index")]


async def node_name(job: Job) -> str:
    if job.node_id is None:
        return ""
    return await Node.objects.filter(id=job.node_id).values_list("name", flat=True).afirst() or ""


async def state_message(job: Job) -> dict[str, Any]:
    """The message a state change becomes: done/failed/cancelled when final, else state."""
    if job.state == Job.State.SUCCEEDED:
        return {"type": "done", "state": job.state, "outputs": await outputs_json(job)}
    if job.state == Job.State.FAILED:
        node = job.error_node
        return {"type": "failed", "state": job.state, "error": job.error, "node": node,
                "node_title": node_title(job, node)}  # fmt: skip
    if job.state == Job.State.CANCELLED:
        return {"type": "cancelled", "state": job.state, "error": job.error}
    return {"type": "state", "state": job.state, "queue_position": await queue_position(job),
            "node": await node_name(job), "error": job.error}  # fmt: skip


async def job_snapshot(job: Job) -> dict[str, Any]:
    """Everything a page needs to draw the job as it is now (sent first on every connect)."""
    return {
        "type": "snapshot",
        "job_id": str(job.id),
        "state": job.state,
        "queue_position": await queue_position(job),
        "node": await node_name(job),
        "progress": {
            "value": job.progress_value,
            "max": job.progress_max,
            "node": job.current_node,
            "node_title": node_title(job, job.current_node),
        },  # fmt: skip
        "error": job.error if job.state in (Job.State.FAILED, Job.State.CANCELLED) else "",
        "error_node": job.error_node,
        "error_node_title": node_title(job, job.error_node),
        "outputs": await outputs_json(job) if job.state == Job.State.SUCCEEDED else [],
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def preview_text(seq: int, image: bytes) -> dict[str, Any]:
    return {"type": "preview", "seq": seq, "image": base64.b64encode(image).decode("ascii")}


class Outbox:
    """One subscriber's unsent messages: JSON in order (progress coalesced), one preview slot.

    Event handlers only put here and return, so the channel-layer receive loop never waits on a
    socket; one sender task drains it. A preview goes out only when the client has acknowledged the
    last one, so a stalled browser holds at most one frame: the newest replaces an unsent older one.
    """

    def __init__(self, *, previews: bool = True) -> None:
        self.previews = previews
        self.messages: deque[dict[str, Any]] = deque()
        self.preview: tuple[int, bytes] | None = None
        self.credit = 1
        self.wake = asyncio.Event()

    def put(self, message: dict[str, Any]) -> None:
        if message["type"] == "progress" and self.messages and self.messages[-1]["type"] == "progress":
            self.messages[-1] = message
        else:
            self.messages.append(message)
        self.wake.set()

    def put_preview(self, seq: int, image: bytes) -> None:
        if self.previews:
            self.preview = (seq, image)
            self.wake.set()

    def drop_preview(self) -> None:
        self.preview = None

    def ack(self) -> None:
        self.credit = 1
        self.wake.set()

    async def next(self) -> dict[str, Any] | tuple[int, bytes]:
        """The next thing to send: queued JSON first, then the preview if the client is ready."""
        while True:
            if self.messages:
                return self.messages.popleft()
            if self.preview is not None and self.credit:
                preview, self.preview, self.credit = self.preview, None, 0
                return preview
            self.wake.clear()
            await self.wake.wait()


def node_json(node: Node, current: list[dict[str, Any]]) -> dict[str, Any]:
    health = node.health if isinstance(node.health, dict) else {}
    return {"id": node.id, "name": node.name, "status": node.status, "enabled": node.enabled,
            "running": node.running, "capacity": node.capacity, "gpu": health.get("gpu", ""),
            "vram_total": health.get("vram_total", 0), "vram_free": health.get("vram_free", 0),
            "queue_remaining": health.get("queue_remaining", 0), "last_error": node.last_error,
            "jobs": current, "admin_url": f"/admin/nodes/node/{node.id}/change/"}  # fmt: skip


def job_row(job: Job, node_name: str = "") -> dict[str, Any]:
    return {"id": str(job.id), "state": job.state, "node": node_name, "priority": job.priority,
            "progress": {"value": job.progress_value, "max": job.progress_max}, "error": job.error[:300],
            "created_at": job.created_at.isoformat(), "page_url": f"/jobs/{job.id}/",
            "thumbnail_url": output_path(job.id, 0) if getattr(job, "n_outputs", 0) else None,
            "admin_url": f"/admin/generations/job/{job.id}/change/"}  # fmt: skip


async def nodes_json() -> list[dict[str, Any]]:
    current: dict[int, list[dict[str, Any]]] = {}
    in_flight = Job.objects.filter(state__in=(Job.State.ASSIGNED, Job.State.RUNNING)).order_by("created_at")
    async for job in in_flight.only("id", "state", "node_id", "progress_value", "progress_max"):
        row = {"id": str(job.id), "state": job.state, "value": job.progress_value, "max": job.progress_max}
        current.setdefault(job.node_id, []).append(row)
    return [node_json(node, current.get(node.id, [])) async for node in Node.objects.order_by("name")]


async def queue_json() -> dict[str, Any]:
    queued = Job.objects.queued().order_by("-priority", "created_at")
    head = [job_row(job) async for job in queued.defer("prompt", "inputs")[:QUEUE_SHOWN]]
    since = timezone.now() - timedelta(minutes=RATE_WINDOW_MINUTES)
    done = await Job.objects.filter(state=Job.State.SUCCEEDED, finished_at__gte=since).acount()
    return {"length": await queued.acount(), "head": head, "jobs_per_minute": round(done / RATE_WINDOW_MINUTES, 2)}


async def fleet_json() -> dict[str, Any]:
    """The dashboard's summary: every node, the queue and the job rate."""
    by_state = {
        row["state"]: row["n"] async for row in Job.objects.values("state").annotate(n=Count("id")).order_by()
    }
    return {"type": "fleet", "nodes": await nodes_json(), "queue": await queue_json(), "jobs_by_state": by_state}


def _rows():
    return Job.objects.select_related("node").defer("prompt", "inputs").annotate(n_outputs=Count("outputs"))


async def job_row_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The dashboard row of the job a job.state event is about."""
    job = await _rows().filter(id=event["job_id"]).afirst()
    return job_row(announced(job, event), job.node.name if job.node else "") if job else None


def announced(job: Job, event: dict[str, Any]) -> Job:
    """The job's row as a job.state event describes it. An executor announces a job's start at once and
    writes it to the row up to a moment later (executor.LIVE_WRITE_SECONDS): the row may not say it yet."""
    if event.get("state") == Job.State.RUNNING and job.state == Job.State.ASSIGNED:
        job.state = Job.State.RUNNING
    return job


async def recent_jobs_json() -> list[dict[str, Any]]:
    jobs = _rows().order_by("-created_at")[:RECENT_JOBS]
    return [job_row(job, job.node.name if job.node else "") async for job in jobs]
