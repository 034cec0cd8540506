"""/ws/jobs/<id>/ over a real Daphne socket, fed by a real Celery worker running jobs on fake ComfyUIs."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from generations import services
from generations.models import Job
from tests.generations.conftest import register, wait_finished
from tests.generations.graphs import txt2img
from tests.live.conftest import wait_running

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def collect(*subscribers, timeout: float = 30):
    return await asyncio.gather(*(s.run(timeout=timeout) for s in subscribers))


def test_a_successful_job_streams_snapshot_progress_previews_then_done(worker, fakes, subscriber, user):
    register(fakes(step_time=0.05, steps_override=8), "gpu")
    job = services.job_create(prompt=txt2img(), owner=user)
    watcher = subscriber(job.id)

    asyncio.run(collect(watcher))

    types = watcher.types()
    assert types[0] == "snapshot" and types[-1] == "done"
    assert types.index("progress") < types.index("preview") < types.index("done")
    assert "running" in [m["state"] for m in watcher.of_type("state")]
    values = [m["value"] for m in watcher.of_type("progress") if m["max"] == 8]
    assert values == sorted(values) and values[-1] == 8
    assert all(m[:2] == b"\xff\xd8" for m in watcher.messages if isinstance(m, bytes))
    [done] = watcher.of_type("done")
    assert [o["url"] for o in done["outputs"]] == [f"/jobs/{job.id}/outputs/0"]


def test_a_late_joiner_gets_the_state_so_far_and_the_latest_preview(worker, fakes, subscriber, user):
    register(fakes(step_time=0.2, steps_override=30), "gpu")
    job = wait_running(services.job_create(prompt=txt2img(), owner=user))
    asyncio.run(asyncio.sleep(0.5))
    late = subscriber(job.id, "?previews=text")

    asyncio.run(collect(late))

    snapshot = late.messages[0]
    assert snapshot["type"] == "snapshot" and snapshot["state"] == "running"
    assert snapshot["progress"]["value"] >= 1 and snapshot["progress"]["max"] == 30
    assert snapshot["progress"]["node_title"]
    assert late.messages[1]["type"] == "preview" and late.messages[1]["seq"] == 0
    assert late.of_type("done")


def test_a_finished_job_answers_with_its_outputs_at_once(worker, fakes, subscriber, user):
    register(fakes(), "gpu")
    [job] = wait_finished([services.job_create(prompt=txt2img(), owner=user)])

    snapshot = subscriber(job.id).first()

    assert snapshot["state"] == "succeeded" and snapshot["outputs"][0]["download_url"].endswith("?download=1")


def test_a_failing_job_ends_with_the_message_and_the_node(worker, fakes, subscriber, user):
    fault = {"kind": "runtime_error", "node": "3", "exception_message": "CUDA out of memory"}
    register(fakes(step_time=0.02, fault=fault), "gpu")
    job = services.job_create(prompt=txt2img(), owner=user)
    watcher = subscriber(job.id)

    asyncio.run(collect(watcher))

    assert watcher.types()[0] == "snapshot" and watcher.types()[-1] == "failed"
    [failed] = watcher.of_type("failed")
    assert "CUDA out of memory" in failed["error"] and failed["node"] == "3"
    assert failed["node_title"]


def test_a_cancelled_job_ends_with_cancelled(worker, fakes, subscriber, user):
    register(fakes(step_time=0.1, steps_override=200), "gpu")
    job = services.job_create(prompt=txt2img(), owner=user)
    watcher = subscriber(job.id)

    async def cancel_when_running():
        await asyncio.to_thread(wait_running, job)
        await asyncio.to_thread(lambda: services.job_cancel(job=Job.objects.get(id=job.id)))

    async def main():
        await asyncio.gather(watcher.run(), cancel_when_running())

    asyncio.run(main())

    types = watcher.types()
    assert types[0] == "snapshot" and types[-1] == "cancelled"
    assert "progress" in types


def test_a_queued_job_shows_its_place_in_the_queue(subscriber, user):
    jobs = [services.job_create(prompt=txt2img(), owner=user) for _ in range(3)]
    urgent = services.job_create(prompt=txt2img(), owner=user, priority=5)

    positions = [subscriber(job.id).first()["queue_position"] for job in [*jobs, urgent]]

    assert positions == [1, 2, 3, 0]


def test_an_unknown_job_is_refused(daphne):
    async def attempt():
        async with connect(daphne.ws(f"/ws/jobs/{uuid.uuid4()}/"), origin=daphne.url) as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == 403
