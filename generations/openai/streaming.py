"""`stream: true`: server-sent events in OpenAI's shape, fed by the jobs' channel-layer groups.

Per job, `partial_images` latent previews go out as `<kind>.partial_image` events, spread over the
sampling (a preview is sent once progress passes k/(partial_images+1)); then each image the job
saved goes out as `<kind>.completed`, where kind is `image_generation` or `image_edit`. A failure
is an `error` event with OpenAI's error body, which the SDK raises as `APIError`.

The generator runs on Daphne's event loop: a stream holds no thread while it waits. The layer is
lossy, so the database is checked every second as well: a lost `job.state` costs a second, and a
lost preview only one partial image.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.http import StreamingHttpResponse

from generations import progress, services
from generations.models import Job
from generations.openai.errors import OpenAIError
from generations.openai.images import encode, job_images, raise_failure
from generations.outputs import image_size

POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 0.5
USAGE = {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}, "output_tokens": 0,
         "total_tokens": 0}  # fmt: skip


@dataclass(frozen=True)
class StreamSpec:
    kind: str  # "image_generation" or "image_edit"
    partial_images: int
    output_format: str
    compression: int
    quality: str
    background: str
    timeout: float


def stream_response(job_ids: list[Any], spec: StreamSpec) -> StreamingHttpResponse:
    response = StreamingHttpResponse(image_events(job_ids, spec), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy must pass each event on at once
    return response


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def wants_preview(sent: int, wanted: int, fraction: float) -> bool:
    """Whether the next preview is due: partial k goes out once progress passes k/(wanted+1)."""
    return sent < wanted and fraction >= (sent + 1) / (wanted + 1)


@dataclass
class Sampling:
    """What a stream knows of one job's sampling: progress so far, partial images sent."""

    fraction: float = 0.0
    sent: int = 0


async def image_events(job_ids: list[Any], spec: StreamSpec) -> AsyncIterator[bytes]:
    """The event stream of a request's jobs: partial images as they come, each job's images as it ends."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    groups = [progress.job_group(job_id) for job_id in job_ids]
    for group in groups:
        await layer.group_add(group, channel)
    pending = list(job_ids)
    try:
        async for event in _events(layer, channel, pending, spec):
            yield event
    except OpenAIError as error:
        yield sse("error", {"type": "error", **error.body})
    finally:
        for group in groups:
            await layer.group_discard(group, channel)
        # A client that hung up gets no images: stop spending GPU time on them.
        for job_id in pending:
            await sync_to_async(_cancel)(job_id)


async def _events(layer, channel: str, pending: list[Any], spec: StreamSpec) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + spec.timeout
    sampling = {str(job_id): Sampling() for job_id in pending}
    message: dict[str, Any] | None = {"type": "job.state"}  # check the database first
    last_check = last_write = time.monotonic() - POLL_SECONDS
    while pending:
        if message is None or message["type"] == "job.state" or time.monotonic() - last_check > POLL_SECONDS:
            last_check = time.monotonic()
            for job_id in await sync_to_async(_finished)(pending):
                for completed in await sync_to_async(_completed)(job_id, spec):
                    yield sse(f"{spec.kind}.completed", completed)
                pending.remove(job_id)
            if not pending:
                return
        if time.monotonic() > deadline:
            raise OpenAIError(503, f"The job did not finish within {spec.timeout:g} s.", code="timeout")
        if time.monotonic() - last_write > KEEPALIVE_SECONDS:
            # An SSE comment, ignored by clients. Daphne stops reading a request once it has its
            # body, so a failed write is how it learns the client hung up (its jobs get cancelled).
            last_write = time.monotonic()
            yield b": keep-alive\n\n"
        message = await _receive(layer, channel)
        job = sampling.get(message.get("job_id", "")) if message else None
        if job is None:
            continue
        if message["type"] == "job.progress" and message.get("max"):
            job.fraction = message["value"] / message["max"]
        elif message["type"] == "job.preview" and wants_preview(job.sent, spec.partial_images, job.fraction):
            index = sum(other.sent for other in sampling.values())
            yield sse(f"{spec.kind}.partial_image", await _partial(message["image"], spec, index))
            job.sent += 1
            last_write = time.monotonic()


async def _receive(layer, channel: str) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(layer.receive(channel), POLL_SECONDS)
    except TimeoutError:
        return None


def _finished(job_ids: list[Any]) -> list[Any]:
    """The ids of the jobs that ended, in the request's order."""
    ended = {str(job_id) for job_id in Job.objects.finished().filter(id__in=job_ids).values_list("id", flat=True)}
    return [job_id for job_id in job_ids if str(job_id) in ended]


def _cancel(job_id: Any) -> None:
    job = Job.objects.filter(id=job_id).first()
    if job is not None and not job.is_finished:
        services.job_cancel(job=job)


async def _partial(jpeg: bytes, spec: StreamSpec, index: int) -> dict[str, Any]:
    data = await sync_to_async(encode, thread_sensitive=False)(jpeg, spec.output_format, spec.compression)
    return {**_common(spec, _size(data)), "type": f"{spec.kind}.partial_image", "partial_image_index": index,
            "b64_json": base64.b64encode(data).decode()}  # fmt: skip


def _completed(job_id: Any, spec: StreamSpec) -> list[dict[str, Any]]:
    job = Job.objects.prefetch_related("outputs").get(id=job_id)
    raise_failure(job)
    events = []
    for output in job_images(job):
        with output.file.open("rb") as fh:
            data = encode(fh.read(), spec.output_format, spec.compression)
        size = f"{output.width}x{output.height}" if output.width else _size(data)
        events.append({**_common(spec, size), "type": f"{spec.kind}.completed", "usage": USAGE,
                       "b64_json": base64.b64encode(data).decode()})  # fmt: skip
    return events


def _common(spec: StreamSpec, size: str) -> dict[str, Any]:
    return {"created_at": int(time.time()), "size": size, "quality": spec.quality, "background": spec.background,
            "output_format": spec.output_format}  # fmt: skip


def _size(data: bytes) -> str:
    width, height = image_size(data)
    return f"{width}x{height}"
