"""Replay the recorded WebSocket scenarios (ws/*.jsonl) and compare message order and field sets."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.fake_comfyui import FakeComfyUI

from .scenario import Replay, Trigger, prompt_body, replay, run_prompt
from .traces import ws_trace
from .wsclient import Recorder, is_text

NOT_AN_IMAGE = b"this is not a png file\n"


async def _run_a_success(run: Replay) -> None:
    await run_prompt(run.http, run.fake, prompt_body(ws_trace("a_success.submitter")[0]))


async def _upload_not_an_image(run: Replay) -> None:
    files = {"image": ("not_an_image.png", NOT_AN_IMAGE, "image/png")}
    assert (await run.http.post("/upload/image", files=files)).status_code == 200


async def _run_a_then_free(run: Replay) -> None:
    await _run_a_success(run)
    response = await run.http.post("/free", json={"unload_models": True, "free_memory": True})
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize(
    ("name", "roles", "setup"),
    [
        ("a_success", ["submitter", "observer"], None),
        ("b_cached", ["submitter", "observer"], _run_a_success),
        ("b2_partially_cached", ["submitter", "observer"], _run_a_success),
        ("c_runtime_error_loadimage", ["submitter", "observer"], _upload_not_an_image),
        ("c2_runtime_error_saveimage", ["submitter", "observer"], None),
        ("f_no_client_id", ["socket1", "socket2"], None),
        ("g_binary_text_frame", ["submitter", "observer"], None),
        ("k_after_free_same_prompt", ["submitter"], _run_a_then_free),
    ],
)
async def test_scenario_replays_like_the_trace(
    fake: FakeComfyUI, name: str, roles: list[str], setup: Trigger | None
) -> None:
    await replay(fake, name, roles, setup=setup)


async def test_partial_execution_targets_runs_only_the_target_branch(fake: FakeComfyUI) -> None:
    run = await replay(fake, "l_partial_execution_targets", ["submitter"], drop_connect_status=True)
    prompt_id = run.prompt_ids[0]
    async with httpx.AsyncClient(base_url=fake.url) as http:
        entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    assert entry["prompt"][4] == ["3"]
    assert list(entry["outputs"]) == ["3"]


async def test_runtime_error_carries_the_recorded_field_set(fake: FakeComfyUI) -> None:
    run = await replay(fake, "c_runtime_error_loadimage", ["submitter"], setup=_upload_not_an_image)
    live = [f for f in run.sockets["submitter"].frames if is_text(f, "execution_error")]
    _, recorded = ws_trace("c_runtime_error_loadimage.submitter")
    expected = next(f["msg"]["data"] for f in recorded if f.get("msg", {}).get("type") == "execution_error")
    data = json.loads(live[0])["data"]
    assert list(data) == list(expected)
    assert data["exception_type"] == "PIL.UnidentifiedImageError"
    assert re.fullmatch(r"cannot identify image file '.*not_an_image\.png'\n", data["exception_message"])


async def _interrupt_during_node_3(run: Replay) -> None:
    await run.sockets["submitter"].wait_for(lambda f: is_text(f, "executing", node="3"))
    assert (await run.http.post("/interrupt")).status_code == 200


async def _targeted_interrupts(run: Replay) -> None:
    submitter = run.sockets["submitter"]
    await submitter.wait_for(lambda f: is_text(f, "executing", node="2"))
    await run.http.post("/interrupt", json={"prompt_id": "not-running-id"})
    await submitter.wait_for(lambda f: is_text(f, "executing", node="4"))
    await run.http.post("/interrupt", json={"prompt_id": run.prompt_ids[0]})


async def test_interrupt_takes_effect_at_the_next_node(fake: FakeComfyUI) -> None:
    fake.configure(node_time=0.1)
    await replay(fake, "d_interrupted", ["submitter", "observer"], during=_interrupt_during_node_3)


async def test_targeted_interrupt_ignores_other_ids(fake: FakeComfyUI) -> None:
    fake.configure(node_time=0.1)
    await replay(fake, "d2_targeted_interrupt", ["submitter"], during=_targeted_interrupts)
    assert [i["effective"] for i in fake.interrupts] == [False, True]


async def _second_socket_mid_run(run: Replay) -> None:
    await run.sockets["old_socket"].wait_for(lambda f: is_text(f, "executing", node="3"))
    await run.connect("new_socket", client_id="clientR")


async def test_reconnect_with_same_client_id_takes_over(fake: FakeComfyUI) -> None:
    fake.configure(node_time=0.1)
    clients = {"old_socket": "clientR"}  # the h trace names the clientId only in its description
    run = await replay(fake, "h_reconnect", ["old_socket"], during=_second_socket_mid_run, client_ids=clients)
    assert len(run.sockets) == 2


async def test_closing_an_older_socket_silences_the_newer_one(fake: FakeComfyUI) -> None:
    header, recorded = ws_trace("h2_reconnect_gotcha.new_socket")
    old = await Recorder.connect(f"{fake.ws_url}?clientId=clientG")
    await old.wait_for(lambda f: is_text(f, "status"))
    new = await Recorder.connect(f"{fake.ws_url}?clientId=clientG")
    await new.wait_for(lambda f: is_text(f, "status"))
    await old.close()
    async with httpx.AsyncClient(base_url=fake.url) as http:
        await run_prompt(http, fake, prompt_body(header))
    await new.quiet()
    assert len(new.frames) == len(recorded) == 1
    await new.close()


async def test_feature_flags_handshake_replies_once(fake: FakeComfyUI) -> None:
    _, recorded = ws_trace("i_feature_flags_no_clientId")
    socket = await Recorder.connect(fake.ws_url)
    await socket.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    await socket.wait_for(lambda f: is_text(f, "feature_flags"))
    await socket.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    await socket.quiet()
    expected = [f["msg"] for f in recorded]
    received = [json.loads(f) for f in socket.frames]
    assert [m["type"] for m in received] == [m["type"] for m in expected]
    assert re.fullmatch(r"[0-9a-f]{32}", received[0]["data"]["sid"])
    assert received[1]["data"] == expected[1]["data"]
    await socket.close()


async def test_api_ws_alias_accepts_client_id(fake: FakeComfyUI) -> None:
    _, recorded = ws_trace("i2_api_ws_alias")
    socket = await Recorder.connect(f"{fake.url.replace('http', 'ws')}/api/ws?clientId=apiAliasClient")
    await socket.quiet()
    assert [json.loads(f) for f in socket.frames] == [recorded[0]["msg"]]
    await socket.close()
