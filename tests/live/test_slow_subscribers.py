"""Slow and stalled browsers: previews are coalesced per subscriber and never hold back anyone else."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from generations import services
from generations.models import Job
from tests.fake_comfyui.images import preview_jpeg
from tests.generations.conftest import register
from tests.generations.graphs import txt2img

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

STEPS = 40


def step_of(frame: bytes) -> int:
    steps = {preview_jpeg(step, STEPS): step for step in range(1, STEPS + 1)}
    return steps[frame]


def test_a_subscriber_that_never_reads_does_not_stall_another_or_the_job(worker, fakes, subscriber, user):
    register(fakes(step_time=0.02, steps_override=STEPS), "gpu")
    job = services.job_create(prompt=txt2img(), owner=user)
    reader = subscriber(job.id)

    async def main() -> float:
        # max_queue=1: the client stops reading its socket after one frame, so TCP pushes back on Daphne.
        async with connect(reader.url, origin=reader.origin, max_queue=1, max_size=None):
            started = time.monotonic()
            await reader.run(timeout=30)
            return time.monotonic() - started

    elapsed = asyncio.run(main())

    assert reader.types()[-1] == "done"
    frames = [step_of(m) for m in reader.messages if isinstance(m, bytes)]
    assert len(frames) >= STEPS // 2 and frames == sorted(frames)
    assert elapsed < 15
    assert Job.objects.get(id=job.id).state == Job.State.SUCCEEDED


def test_a_subscriber_that_does_not_ack_holds_one_preview_and_still_gets_every_state(
    worker, fakes, subscriber, user
):
    register(fakes(step_time=0.02, steps_override=STEPS), "gpu")
    job = services.job_create(prompt=txt2img(), owner=user)
    stalled = subscriber(job.id, ack=False)

    asyncio.run(stalled.run(timeout=30))

    assert stalled.types().count("preview") == 1
    assert stalled.types()[-1] == "done" and stalled.of_type("progress")[-1]["value"] == STEPS


def test_a_slow_subscriber_gets_the_newest_frame_not_the_backlog(worker, fakes, subscriber, user):
    register(fakes(step_time=0.05, steps_override=STEPS), "gpu")
    job = services.job_create(prompt=txt2img(), owner=user)
    slow = subscriber(job.id, ack=False)
    fast = subscriber(job.id)

    async def drawing_slowly():
        # Acks after "drawing" each frame for 0.3 s: 6 steps go by per frame.
        async with connect(slow.url, origin=slow.origin, max_size=None) as ws:
            async for frame in ws:
                if isinstance(frame, bytes):
                    slow.messages.append(frame)
                    await asyncio.sleep(0.3)
                    await ws.send('{"type": "ack"}')
                elif '"done"' in frame:
                    return

    async def main():
        await asyncio.gather(drawing_slowly(), fast.run(timeout=30))

    asyncio.run(main())

    slow_steps = [step_of(frame) for frame in slow.messages]
    fast_steps = [step_of(m) for m in fast.messages if isinstance(m, bytes)]
    assert 3 <= len(slow_steps) <= STEPS // 4, slow_steps
    assert slow_steps == sorted(set(slow_steps)) and slow_steps[-1] >= STEPS - 8
    assert len(fast_steps) >= STEPS - 4
