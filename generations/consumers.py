"""Live progress over WebSockets: one job (`/ws/jobs/<id>/`) and the operator dashboard (`/ws/dashboard/`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from generations import live, progress
from generations.models import Job

log = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's): unknown job, not staff.
NOT_FOUND, FORBIDDEN = 4404, 4403
FLEET_REFRESH_SECONDS, FLEET_DEBOUNCE_SECONDS = 5.0, 0.2


class OutboxConsumer(AsyncJsonWebsocketConsumer):
    """Handlers put into an Outbox; one task per socket sends, so a slow client delays only itself."""

    sender: asyncio.Task | None = None
    joined: tuple[str, ...] = ()

    async def join(self, *groups: str) -> None:
        self.outbox = live.Outbox()
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = groups

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Client messages (acks: one per preview and viewer) touch no database, so they skip Channels'
        # per-message close_old_connections, a thread hop each.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    def start_sender(self) -> None:
        self.sender = asyncio.create_task(self._send_forever())

    async def _send_forever(self) -> None:
        while True:
            item = await self.outbox.next()
            if isinstance(item, dict):
                await self.send_json(item)
            else:
                await self.send_preview(*item)

    async def send_preview(self, seq: int, image: bytes) -> None:
        """A preview as a binary frame (the job consumer may send it as text instead)."""
        await self.send(bytes_data=image)

    async def disconnect(self, code: int) -> None:
        for task in (self.sender, getattr(self, "refresher", None)):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)


class JobFeed:
    """One channel-layer subscription per job and Daphne process, fanned out to that process's viewers.

    Each layer message is turned into a client message once and put into every viewer's Outbox, so
    50 viewers of one job cost one receive (and one DB read per state change), not 50.
    """

    feeds: dict[str, JobFeed] = {}

    def __init__(self, layer: Any, job_id: str) -> None:
        self.layer, self.group = layer, progress.job_group(job_id)
        self.job_id = job_id
        self.viewers: set[live.Outbox] = set()
        self.task: asyncio.Task | None = None

    @classmethod
    async def subscribe(cls, layer: Any, job_id: str, outbox: live.Outbox) -> JobFeed:
        """Join the job's group (once per process) before returning, so no event after this is missed."""
        feed = cls.feeds.get(job_id)
        if feed is None or feed.task is None or feed.task.done():
            feed = cls.feeds[job_id] = cls(layer, job_id)
            channel = await layer.new_channel()
            await layer.group_add(feed.group, channel)
            feed.task = asyncio.create_task(feed._forward(channel))
        feed.viewers.add(outbox)
        return feed

    async def unsubscribe(self, outbox: live.Outbox) -> None:
        self.viewers.discard(outbox)
        if self.viewers or self.feeds.get(self.job_id) is not self:
            return
        del self.feeds[self.job_id]
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _forward(self, channel: str) -> None:
        try:
            while True:
                event = await self.layer.receive(channel)
                try:
                    await self._fan_out(event)
                except Exception:  # noqa: BLE001 - one bad event must not silence the job for every viewer
                    log.exception("job %s: could not forward %s", self.job_id, event.get("type"))
        finally:
            await self.layer.group_discard(self.group, channel)

    async def _fan_out(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "job.preview":
            for outbox in self.viewers:
                outbox.put_preview(event["seq"], event["image"])
        elif kind == "job.progress":
            message = {"type": "progress", **{k: event[k] for k in ("value", "max", "node", "node_title")}}
            for outbox in self.viewers:
                outbox.put(message)
        elif kind == "job.state":
            job = live.announced(await Job.objects.aget(id=self.job_id), event)
            message = await live.state_message(job)
            for outbox in self.viewers:
                if job.is_finished:
                    outbox.drop_preview()  # the final images supersede any preview not yet sent
                outbox.put(message)


class JobConsumer(OutboxConsumer):
    """No login: the job id is an unguessable UUID, as for the preview image and the job page."""

    feed: JobFeed | None = None

    async def connect(self) -> None:
        job_id = str(self.scope["url_route"]["kwargs"]["job_id"])
        job = await Job.objects.filter(id=job_id).afirst()
        if job is None:
            await self.close(code=NOT_FOUND)
            return
        self.mode = _query(self.scope).get("previews", "binary")
        self.outbox = live.Outbox(previews=self.mode != "none")
        # Subscribe before reading the snapshot: an event in between arrives twice rather than never.
        self.feed = await JobFeed.subscribe(self.channel_layer, job_id, self.outbox)
        await self.accept()
        self.start_sender()
        await job.arefresh_from_db()
        self.outbox.put(await live.job_snapshot(job))
        image = await sync_to_async(progress.latest_preview, thread_sensitive=False)(job_id)
        if image and not job.is_finished:
            self.outbox.put_preview(0, image)

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if self.feed is not None:
            await self.feed.unsubscribe(self.outbox)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ack":
            self.outbox.ack()

    async def send_preview(self, seq: int, image: bytes) -> None:
        if self.mode == "text":
            await self.send_json(live.preview_text(seq, image))
        else:
            await super().send_preview(seq, image)


class DashboardConsumer(OutboxConsumer):
    """Staff only: node status, queue and job state changes for the operator dashboard."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_active and user.is_staff):
            await self.close(code=FORBIDDEN)
            return
        await self.join(progress.NODES_GROUP, progress.JOBS_GROUP)
        await self.accept()
        self.start_sender()
        fleet = await live.fleet_json()
        self.outbox.put(fleet)
        self.outbox.put({"type": "jobs", "jobs": await live.recent_jobs_json()})
        self.changed = asyncio.Event()
        self.refresher = asyncio.create_task(self._refresh_forever(fleet))

    async def node_status(self, event: dict[str, Any]) -> None:
        self.outbox.put({"type": "node.status", **{k: event[k] for k in ("node_id", "name", "status", "old")}})
        self.changed.set()

    async def job_state(self, event: dict[str, Any]) -> None:
        if row := await live.job_row_of(event):
            self.outbox.put({"type": "job", "job": row})
        self.changed.set()

    async def _refresh_forever(self, last: dict[str, Any]) -> None:
        # After a change, and every few seconds anyway (new queued jobs and slot counts change without
        # an event); a burst of changes costs one summary, not one each.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), FLEET_REFRESH_SECONDS)
            await asyncio.sleep(FLEET_DEBOUNCE_SECONDS)
            self.changed.clear()
            fleet = await live.fleet_json()
            if fleet != last:
                self.outbox.put(fleet)
            last = fleet


def _query(scope: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
