"""ComfyClient against the fake ComfyUI: queue, history, files, server info and auth calls."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from nodes.comfy import ComfyClient, ComfyFileTooLarge, ComfyRejected, ComfyUnauthorized, Status, UploadedFile
from tests.fake_comfyui import FakeComfyUI
from tests.nodes import graphs


@pytest.fixture
def fake():
    with FakeComfyUI(port=0, step_time=0.0) as server:
        yield server


@pytest.fixture
def client(fake):
    with ComfyClient(fake.url, timeout=5.0) as comfy:
        yield comfy


def png(color=(10, 200, 30), size=(16, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def busy(fake, client):
    """Queue a long sampler run so that later prompts stay pending; returns its prompt_id."""
    fake.configure(step_time=0.05)
    return client.queue_prompt(graphs.txt2img(steps=200), client_id="busy").prompt_id


def test_system_stats_models_and_object_info(client):
    stats = client.system_stats()
    assert stats.comfyui_version == "0.3.64"
    assert stats.devices[0].type == "cpu"
    assert "checkpoints" in client.models()
    assert "tiny-sd15-random.ckpt" in client.models("checkpoints")
    info = client.object_info()
    assert "KSampler" in info and "SaveImage" in info
    assert client.object_info_for("SaveImage")["output_node"] is True
    assert client.object_info_for("DoesNotExist") is None  # 200 {} (http/get_object_info_unknown_class.json)


def test_unknown_model_folder_is_rejected(client):
    with pytest.raises(ComfyRejected) as caught:
        client.models("not_a_folder")
    assert caught.value.status_code == 404


def test_upload_then_use_in_load_image(client):
    uploaded = client.upload_image(png(), filename="input_cat.png")
    assert uploaded == UploadedFile("input_cat.png", "", "input")
    assert "input_cat.png" in client.object_info_for("LoadImage")["input"]["required"]["image"][0]

    result = client.run_prompt(graphs.load_image(uploaded.name), idle_timeout=5.0)

    [output] = result.outputs
    data = client.view(output.filename, subfolder=output.subfolder, kind=output.type)
    assert Image.open(io.BytesIO(data)).size == (16, 16)
    assert client.view(uploaded.name, kind="input") == png()


def test_upload_renames_a_taken_name_unless_overwrite(client):
    assert client.upload_image(png(), filename="same.png").name == "same.png"
    assert client.upload_image(png(), filename="same.png").name == "same.png"  # identical bytes
    assert client.upload_image(png((1, 2, 3)), filename="same.png").name == "same (1).png"
    assert client.upload_image(png((4, 5, 6)), filename="same.png", overwrite=True).name == "same.png"
    sub = client.upload_image(png(), filename="a.png", subfolder="jobs")
    assert (sub.name, sub.subfolder) == ("a.png", "jobs")


def test_view_into_writes_a_file_as_it_arrives_and_stops_past_the_limit(client):
    data = os.urandom(1024 * 1024 + 7)
    name = client.upload_image(data, filename="big.bin").name
    chunks: list[bytes] = []

    class Sink:
        write = chunks.append

    assert client.view_into(Sink(), name, kind="input", limit=len(data)) == len(data)
    assert b"".join(chunks) == data and len(chunks) > 1  # never the whole file in one piece
    with pytest.raises(ComfyFileTooLarge, match=f"more than {len(data) - 1} bytes of big.bin"):
        client.view_into(io.BytesIO(), name, kind="input", limit=len(data) - 1)
    with pytest.raises(ComfyRejected):
        client.view_into(io.BytesIO(), "nope.png", kind="output")


def test_view_of_a_missing_file_is_rejected(client):
    with pytest.raises(ComfyRejected) as caught:
        client.view("nope.png", subfolder="", kind="output")
    assert caught.value.status_code == 404


def test_queue_lists_running_and_pending_in_execution_order(client, fake):
    running = busy(fake, client)
    later = client.queue_prompt(graphs.txt2img(seed=2), client_id="c1")
    first = client.queue_prompt(graphs.txt2img(seed=3), client_id="c1", front=True)

    queue = client.queue()

    assert [item.prompt_id for item in queue.running] == [running]
    assert [item.prompt_id for item in queue.pending] == [first.prompt_id, later.prompt_id]
    assert queue.pending[0].number < 0 and queue.pending[0].client_id == "c1"
    assert queue.pending[0].outputs_to_execute == ("9",)
    assert client.queue_remaining() == 3


def test_delete_clear_and_cancel(client, fake):
    running = busy(fake, client)
    ids = [client.queue_prompt(graphs.txt2img(seed=s), client_id="c1").prompt_id for s in (1, 2, 3)]

    client.delete_from_queue([ids[0]])
    assert [item.prompt_id for item in client.queue().pending] == ids[1:]
    client.clear_queue()
    assert client.queue().pending == () and client.locate(running).state == "running"
    client.cancel(running)
    fake.wait_idle()
    assert client.queue_remaining() == 0
    assert client.history(running).failure.node_type == "KSampler"
    assert client.history(ids[0]) is None


def test_history_list_and_delete(client):
    ids = [client.run_prompt(graphs.txt2img(seed=s), idle_timeout=5.0).prompt_id for s in (1, 2, 3)]

    assert [h.prompt_id for h in client.history_list()] == ids
    assert [h.prompt_id for h in client.history_list(max_items=2)] == ids[1:]
    newest = client.history_list(max_items=1)[0]
    assert (newest.status_str, newest.completed, newest.outputs[0].node_id) == ("success", True, "9")
    client.delete_history([ids[0], "unknown-id"])
    assert client.history(ids[0]) is None
    client.clear_history()
    assert client.history_list() == []


def test_free_drops_the_cache(client, fake):
    client.run_prompt(graphs.TXT2IMG, idle_timeout=5.0)
    client.free(unload_models=True, free_memory=True)
    assert fake.stats.frees == 1


def test_own_prompt_id_and_extra_data_are_kept(client):
    result = client.run_prompt(
        graphs.TXT2IMG, prompt_id="job-1234", extra_data={"extra_pnginfo": {"job": 1}}, idle_timeout=5.0
    )
    assert result.prompt_id == "job-1234"
    assert client.history("job-1234").number == 0


def test_events_iterator_yields_the_initial_status(client):
    events = client.events("watcher", idle_timeout=5.0)
    first = next(events)
    events.close()
    assert first == Status(queue_remaining=0, sid="watcher")


def test_token_is_required_on_http_and_websocket(fake):
    fake.configure(require_token="tok")

    with ComfyClient(fake.url, timeout=5.0) as anonymous:
        with pytest.raises(ComfyUnauthorized) as caught:
            anonymous.queue_remaining()
        assert "401" in str(caught.value) and fake.url in str(caught.value)
        with pytest.raises(ComfyUnauthorized):
            anonymous.open_events("c1")

    with ComfyClient(fake.url, timeout=5.0, headers={"Authorization": "Bearer tok"}) as client:
        assert client.queue_remaining() == 0
        result = client.run_prompt(graphs.TXT2IMG, idle_timeout=5.0)
        first = result.outputs[0]
        assert client.view(first.filename, subfolder=first.subfolder, kind=first.type).startswith(b"\x89PNG")
