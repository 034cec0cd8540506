"""ComfyClient against the fake ComfyUI over real sockets: running prompts, their events and outcomes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from nodes.comfy import (
    BinaryText,
    ComfyClient,
    ComfyExecutionFailed,
    ComfyInterrupted,
    ComfyPartiallyRejected,
    ComfyRejected,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionStart,
    ExecutionSuccess,
    Preview,
    Progress,
    ProgressState,
    shared_client,
)
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


def run(client, graph, **kwargs):
    events = []
    result = client.run_prompt(graph, on_event=events.append, idle_timeout=5.0, **kwargs)
    return result, events


def without_progress_state(events):
    return [e for e in events if not isinstance(e, ProgressState)]


def test_txt2img_yields_typed_events_in_order_and_downloads_png(client):
    result, events = run(client, graphs.TXT2IMG)

    assert all(getattr(e, "prompt_id", None) in (result.prompt_id, None) for e in events)
    main = without_progress_state(events)
    assert isinstance(main[0], ExecutionStart) and isinstance(main[1], ExecutionCached)
    assert main[1].nodes == ()
    assert [e.node for e in main if isinstance(e, Executing)] == ["4", "5", "7", "6", "3", "8", "9", None]
    assert [(e.value, e.max) for e in events if isinstance(e, Progress)] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [type(e) for e in main[-3:]] == [Executed, ExecutionSuccess, Executing]
    assert main[-1].node is None
    [output] = result.outputs
    data = client.view(output.filename, subfolder=output.subfolder, kind=output.type)
    assert (output.node_id, output.type, output.subfolder) == ("9", "output", "")
    assert output.filename.endswith(".png")
    assert Image.open(io.BytesIO(data)).format == "PNG"


def test_saved_and_temp_outputs_are_both_listed(client):
    result, _ = run(client, graphs.INVERT_SAVE)

    kinds = sorted((f.node_id, f.type) for f in result.outputs)
    assert kinds == [("3", "output"), ("3", "output"), ("4", "temp"), ("4", "temp")]
    for output in result.outputs:
        data = client.view(output.filename, subfolder=output.subfolder, kind=output.type)
        image = Image.open(io.BytesIO(data))
        assert image.size == (64, 64), output
        assert image.convert("RGB").getpixel((0, 0)) == (0, 255, 255)  # EmptyImage red, inverted


def test_identical_rerun_is_cached_and_still_lists_outputs(client):
    first, _ = run(client, graphs.TXT2IMG)
    second, events = run(client, graphs.TXT2IMG)

    cached = next(e for e in events if isinstance(e, ExecutionCached))
    assert set(cached.nodes) == set(graphs.TXT2IMG)
    assert [e.node for e in events if isinstance(e, Executing)] == [None]
    assert [e.node for e in events if isinstance(e, Executed)] == ["9"]
    assert second.outputs == first.outputs


def test_outputs_of_a_run_followed_from_its_start_come_from_the_socket_not_history(client, fake):
    first, _ = run(client, graphs.INVERT_SAVE)
    cached, _ = run(client, graphs.INVERT_SAVE)  # every node cached: the output nodes replay `executed`

    assert fake.stats["requests_per_path"].get(f"/history/{first.prompt_id}", 0) == 0
    assert first.history is None and cached.history is None
    assert cached.outputs == first.outputs
    assert first.outputs == client.history(first.prompt_id).outputs


def test_new_seed_reruns_only_the_sampler_branch(client):
    run(client, graphs.TXT2IMG)
    _, events = run(client, graphs.txt2img(seed=1))

    cached = next(e for e in events if isinstance(e, ExecutionCached))
    assert set(cached.nodes) == {"4", "5", "6", "7"}
    assert [e.node for e in events if isinstance(e, Executing)] == ["3", "8", "9", None]


def test_runtime_error_raises_with_comfyui_message_and_node(client, fake):
    fake.configure(fault={"kind": "runtime_error", "node": "8", "exception_type": "torch.OutOfMemoryError"})
    events = []

    with pytest.raises(ComfyExecutionFailed) as caught:
        client.run_prompt(graphs.TXT2IMG, on_event=events.append, idle_timeout=5.0)

    error = caught.value
    assert (error.node_id, error.node_type, error.exception_type) == (
        "8",
        "VAEDecode",
        "torch.OutOfMemoryError",
    )
    assert error.message == "Fake ComfyUI runtime error"
    assert str(error) == (
        "ComfyUI failed at node 8 (VAEDecode): torch.OutOfMemoryError: Fake ComfyUI runtime error"
    )
    assert isinstance(events[-1], ExecutionError)
    assert client.history(error.prompt_id).status_str == "error"


def test_unreadable_upload_fails_at_runtime_in_load_image(client):
    uploaded = client.upload_image(b"this is not an image...", filename="not_an_image.png")

    with pytest.raises(ComfyExecutionFailed) as caught:
        client.run_prompt(graphs.load_image(uploaded.name), idle_timeout=5.0)

    assert (caught.value.node_id, caught.value.node_type) == ("1", "LoadImage")
    assert caught.value.exception_type == "PIL.UnidentifiedImageError"
    assert "cannot identify image file" in str(caught.value)


def test_validation_error_raises_rejected_with_node_errors(client, fake):
    with pytest.raises(ComfyRejected) as caught:
        client.run_prompt(graphs.WIDTH_ZERO, idle_timeout=5.0)

    error = caught.value
    assert error.status_code == 400
    assert error.error_type == "prompt_outputs_failed_validation"
    assert error.message == "Prompt outputs failed validation"
    assert error.error["extra_info"] == {}
    assert error.node_ids == ["1"]
    assert error.node_errors["1"]["errors"][0]["type"] == "value_smaller_than_min"
    assert str(error) == (
        "ComfyUI rejected the prompt: Prompt outputs failed validation"
        " — node 1 (EmptyImage): Value 0 smaller than min of 1: width"
    )
    assert client.queue_remaining() == 0


def test_unknown_class_is_rejected_with_comfyui_details(client):
    graph = {**graphs.WIDTH_ZERO, "1": {"class_type": "DoesNotExistNode", "inputs": {}}}

    with pytest.raises(ComfyRejected) as caught:
        client.queue_prompt(graph, client_id="c1")

    assert caught.value.error_type == "invalid_prompt"
    assert str(caught.value) == (
        "ComfyUI rejected the prompt: Cannot execute because node DoesNotExistNode does not exist. (Node ID '#1')"
    )


def test_200_with_node_errors_is_a_rejection_and_the_valid_half_is_withdrawn(client, fake):
    fake.configure(node_time=0.3)

    with pytest.raises(ComfyPartiallyRejected) as caught:
        client.queue_prompt(graphs.PARTIAL, client_id="c1")

    error = caught.value
    assert isinstance(error, ComfyRejected)
    assert error.prompt_id and error.node_ids == ["3"]
    assert "node 3 (EmptyImage): Value 0 smaller than min of 1: width" in str(error)
    fake.wait_idle()
    where = client.locate(error.prompt_id)
    assert where.state in ("unknown", "finished")
    if where.state == "finished":
        assert where.history.status_str == "error"  # interrupted before SaveImage ran


def test_targeted_interrupt_stops_the_sampler_at_its_next_step(client, fake):
    fake.configure(step_time=0.05)
    events = []

    def interrupt_at_step_2(event):
        events.append(event)
        if isinstance(event, Progress) and event.value == 2:
            client.interrupt("some-other-prompt")  # not running: ignored (ws/d2_targeted_interrupt)
            client.interrupt(event.prompt_id)

    with pytest.raises(ComfyInterrupted) as caught:
        client.run_prompt(graphs.txt2img(steps=20), on_event=interrupt_at_step_2, idle_timeout=5.0)

    assert (caught.value.node_id, caught.value.node_type) == ("3", "KSampler")
    assert max(e.value for e in events if isinstance(e, Progress)) == 2
    assert [i.get("prompt_id") for i in fake.interrupts][-2:] == ["some-other-prompt", caught.value.prompt_id]
    assert client.history(caught.value.prompt_id).failure.node_id == "3"


def test_type1_previews_follow_their_progress(client):
    _, events = run(client, graphs.TXT2IMG)

    steps = [e for e in events if isinstance(e, Progress | Preview)]
    assert [type(e) for e in steps] == [Progress, Preview] * 4
    for preview in steps[1::2]:
        assert (preview.format, preview.node_id, preview.prompt_id) == ("jpeg", None, None)
        assert Image.open(io.BytesIO(preview.image)).format == "JPEG"


def test_type4_previews_carry_metadata_and_precede_their_progress(client):
    result, events = run(client, graphs.TXT2IMG, preview_metadata=True)

    steps = [e for e in events if isinstance(e, Progress | Preview)]
    assert [type(e) for e in steps] == [Preview, Progress] * 4
    for preview in steps[0::2]:
        assert (preview.format, preview.node_id, preview.prompt_id) == ("jpeg", "3", result.prompt_id)
        assert preview.metadata["image_type"] == "image/jpeg"
        assert Image.open(io.BytesIO(preview.image)).size == (512, 512)


def test_no_previews_when_the_server_sends_none(client, fake):
    fake.configure(previews=False)

    _, events = run(client, graphs.TXT2IMG)

    assert not [e for e in events if isinstance(e, Preview)]
    assert len([e for e in events if isinstance(e, Progress)]) == 4


def test_follow_skips_other_prompts_on_the_same_socket(client):
    events = []
    with client.open_events("shared-client", idle_timeout=5.0) as stream:
        first = client.queue_prompt(graphs.INVERT_SAVE, client_id="shared-client")
        second = client.queue_prompt(graphs.TXT2IMG, client_id="shared-client")
        result = client.wait(stream, second.prompt_id, on_event=events.append)

    assert result.prompt_id == second.prompt_id
    assert {e.prompt_id for e in events if not isinstance(e, Preview)} == {second.prompt_id}
    assert client.history(first.prompt_id).status_str == "success"


def test_binary_text_frames_arrive_on_the_raw_event_stream(client):
    with client.open_events("text-client", idle_timeout=5.0) as stream:
        queued = client.queue_prompt(graphs.IMAGE_SIZE_TEXT, client_id="text-client")
        seen = []
        for event in stream:
            seen.append(event)
            if isinstance(event, Executing) and event.node is None:
                break

    assert BinaryText(node_id="2", text="width: 64, height: 64\n batch size: 1") in seen
    assert client.history(queued.prompt_id).status_str == "success"


def test_shared_client_is_one_per_server_and_headers_and_keeps_its_connection(fake):
    comfy = shared_client(fake.url, timeout=5.0, headers={"Authorization": "Bearer a"})
    assert shared_client(fake.url + "/", timeout=5.0, headers={"Authorization": "Bearer a"}) is comfy
    assert shared_client(fake.url, timeout=5.0, headers={"Authorization": "Bearer b"}) is not comfy
    before = fake.stats["connections"]
    for _ in range(3):
        comfy.queue_remaining()
    assert fake.stats["connections"] == before + 1  # kept alive between calls
    for _ in range(2):
        with ComfyClient(fake.url, timeout=5.0) as own:
            own.queue_remaining()
    assert fake.stats["connections"] == before + 3  # a client of its own connects again


def test_a_kept_event_socket_serves_the_next_prompt_and_closes_with_its_client(fake):
    with ComfyClient(fake.url, timeout=5.0) as comfy:
        streams = []
        for seed, client_id in ((1, "first"), (2, "second")):
            stream = comfy.take_events(client_id, idle_timeout=5.0)
            queued = comfy.queue_prompt(graphs.txt2img(seed=seed), client_id=stream.client_id)
            comfy.wait(stream, queued.prompt_id)
            comfy.keep_events(stream)  # the prompt ended on it: kept
            streams.append(stream)

        assert streams[1] is streams[0] and streams[1].client_id == "first"
        assert streams[0].still_open()

    assert not streams[0].still_open()  # closing the client closed the socket it kept
