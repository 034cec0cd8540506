"""Sampler scenarios (ws/m_*, p_*, q_*): per-step progress, previews, interrupt, two queued prompts."""

from __future__ import annotations

import asyncio
import io
import json
import struct

import httpx
from PIL import Image

from tests.fake_comfyui import FakeComfyUI

from .scenario import Replay, prompt_body, replay, run_prompt, warm_up
from .traces import header_json, shape, ws_trace
from .wsclient import is_text

TYPE4_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


def _cold_body() -> dict:
    return prompt_body(ws_trace("m_ksampler_cold.submitter")[0])


async def _run_cold(run: Replay) -> None:
    await run_prompt(run.http, run.fake, _cold_body())


async def _run_cold_and_warm(run: Replay) -> None:
    await _run_cold(run)
    await run_prompt(run.http, run.fake, prompt_body(ws_trace("m_ksampler_warm.submitter")[0]))


async def test_cold_run_samples_with_type1_previews(fake: FakeComfyUI) -> None:
    run = await replay(fake, "m_ksampler_cold", ["submitter", "observer"])
    previews = [f for f in run.sockets["submitter"].frames if isinstance(f, bytes)]
    assert all(f[:8] == struct.pack(">II", 1, 1) for f in previews)
    with Image.open(io.BytesIO(previews[0][8:])) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (512, 512), "RGB")
    assert len({f for f in previews}) == len(previews), "frames must be visibly different"


async def test_warm_run_caches_loaders_and_conditioning(fake: FakeComfyUI) -> None:
    await replay(fake, "m_ksampler_warm", ["submitter"], setup=_run_cold)


async def test_metadata_client_gets_type4_before_progress(fake: FakeComfyUI) -> None:
    run = await replay(
        fake, "m_ksampler_type4", ["submitter"], setup=_run_cold_and_warm, feature_flags=TYPE4_FLAGS
    )
    frame = next(f for f in run.sockets["submitter"].frames if isinstance(f, bytes))
    _, recorded = ws_trace("m_ksampler_type4.submitter")
    expected = next(f for f in recorded if f["frame"] == "binary")
    event, length = struct.unpack(">II", frame[:8])
    metadata = frame[8 : 8 + length].decode()
    assert (event, length) == (4, expected["metadata_length"])
    assert list(json.loads(metadata)) == list(json.loads(expected["metadata_raw"]))
    assert frame[8 + length : 8 + length + 4] == bytes.fromhex("ffd8ffe0")


async def _interrupt_after_step_5(run: Replay) -> None:
    submitter = run.sockets["submitter"]
    await submitter.wait_for(lambda f: sum(isinstance(x, bytes) for x in submitter.frames) >= 5)
    response = await run.http.post("/interrupt", json={"prompt_id": run.prompt_ids[0]})
    assert response.status_code == 200


async def test_interrupt_stops_the_sampler_at_its_next_step(fake: FakeComfyUI) -> None:
    name = "p_interrupt_during_sampling"
    setup = warm_up(f"{name}.submitter", step_time=0.1)
    run = await replay(fake, name, ["submitter"], setup=setup, during=_interrupt_after_step_5)
    header = run.header("submitter")
    expected = header_json(header, "http_after")[0]["response"]["json"]
    async with httpx.AsyncClient(base_url=fake.url) as http:
        entry = (await http.get(f"/history/{run.prompt_ids[0]}")).json()
    recorded_entry = next(iter(expected.values()))
    live_entry = entry[run.prompt_ids[0]]
    assert shape(live_entry["status"]) == shape(recorded_entry["status"])
    assert (live_entry["outputs"], live_entry["meta"]) == ({}, {})


async def _second_prompt_and_http_checks(run: Replay) -> None:
    submitter = run.sockets["submitter"]
    header = run.header("submitter")
    await submitter.wait_for(lambda f: is_text(f, "executing", node="3"))
    await run.post_prompt(prompt_body(header, "post_prompt_b"))
    await submitter.wait_for(lambda f: is_text(f, "progress", value=5))
    first, second = run.prompt_ids
    queue = (await run.http.get("/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == [first]
    assert [item[1] for item in queue["queue_pending"]] == [second]
    assert queue["queue_running"][0][3:] == [{"client_id": "clientQ"}, ["9"]]
    assert (await run.http.get(f"/history/{first}")).json() == {}
    assert (await run.http.get(f"/history/{second}")).json() == {}
    assert (await run.http.get("/prompt")).json() == {"exec_info": {"queue_remaining": 2}}


async def test_two_queued_prompts_hand_over_in_order(fake: FakeComfyUI) -> None:
    name = "q_two_prompts_queued"
    setup = warm_up(f"{name}.submitter", step_time=0.04)
    await replay(fake, name, ["submitter"], setup=setup, during=_second_prompt_and_http_checks)


async def test_steps_override_and_previews_off(fake: FakeComfyUI) -> None:
    fake.configure(steps_override=2, previews=False)
    async with httpx.AsyncClient(base_url=fake.url) as http:
        run = Replay(fake, http, "m_ksampler_cold")
        socket = await run.connect("submitter")
        await run.post_prompt(_cold_body())
        await run.finish()
        progress = [json.loads(f)["data"]["value"] for f in socket.frames if is_text(f, "progress")]
        assert progress == [1, 2]
        assert not any(isinstance(f, bytes) for f in socket.frames)
        await socket.close()


async def test_saved_image_has_the_size_the_graph_asked_for(fake: FakeComfyUI) -> None:
    body = prompt_body(ws_trace("q_two_prompts_queued.submitter")[0])
    async with httpx.AsyncClient(base_url=fake.url) as http:
        response = await http.post("/prompt", json=body)
        prompt_id = response.json()["prompt_id"]
        await asyncio.to_thread(fake.wait_idle)
        entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
        image = entry["outputs"]["9"]["images"][0]
        view = await http.get("/view", params=image)
    with Image.open(io.BytesIO(view.content)) as png:
        assert (png.format, png.size) == ("PNG", (128, 128))
        assert json.loads(png.info["prompt"])["3"]["class_type"] == "KSampler"
