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


async def image_events(job_ids: list[Any], spec: StreamSpec) -> AsyncIterator[bytes]:
    """The whole event stream of a request's jobs, one after another."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    groups = [progress.job_group(job_id) for job_id in job_ids]
    for group in groups:
        await layer.group_add(group, channel)
    deadline = time.monotonic() + spec.timeout
    done: set[Any] = set()
    try:
        partials = 0
        for job_id in job_ids:
            async for partial, event in _job_events(layer, channel, job_id, spec, deadline, partials):
                partials += partial
                yield event
            done.add(job_id)
    except OpenAIError as error:
        yield sse("error", {"type": "error", **error.body})
    finally:
        for group in groups:
            await layer.group_discard(group, channel)
        # A client that hung up gets no images: stop spending GPU time on them.
        for job_id in set(job_ids) - done:
            await sync_to_async(_cancel)(job_id)


async def _job_events(layer, channel: str, job_id: Any, spec: StreamSpec, deadline: float, first_index: int):
    sent, fraction = 0, 0.0
    while not await sync_to_async(_finished)(job_id):
        if time.monotonic() > deadline:
            raise OpenAIError(503, f"The job did not finish within {spec.timeout:g} s.", code="timeout")
        try:
            message = await asyncio.wait_for(layer.receive(channel), POLL_SECONDS)
        except TimeoutError:
            continue
        if message.get("job_id") != str(job_id):
            continue
        if message["type"] == "job.progress" and message.get("max"):
            fraction = message["value"] / message["max"]
        elif message["type"] == "job.preview" and wants_preview(sent, spec.partial_images, fraction):
            yield (
                True,
                sse(f"{spec.kind}.partial_image", await _partial(message["image"], spec, first_index + sent)),
            )
            sent += 1
    for completed in await sync_to_async(_completed)(job_id, spec):
        yield False, sse(f"{spec.kind}.completed", completed)


def _finished(job_id: Any) -> bool:
    return Job.objects.finished().filter(id=job_id).exists()


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
