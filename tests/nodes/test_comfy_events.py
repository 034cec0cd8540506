"""Decoding of /ws frames into typed events, byte layouts as recorded (no server needed)."""

from __future__ import annotations

import io
import json
import struct

import pytest
from PIL import Image

from nodes.comfy import (
    BinaryText,
    Executing,
    ExecutionError,
    Preview,
    Progress,
    ProgressState,
    Status,
    UnknownEvent,
)
from nodes.comfy_events import NodeProgress, decode_binary, decode_text

PID = "761dbb50-0998-4cb5-8387-143c88b93d04"


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 255)).save(out, "JPEG")
    return out.getvalue()


def test_type1_preview_is_format_then_jpeg():
    image = jpeg()
    event = decode_binary(struct.pack(">II", 1, 1) + image)
    assert event == Preview(image=image, format="jpeg")


def test_type4_preview_carries_node_and_prompt_from_metadata():
    # metadata_raw of ws/m_ksampler_type4.submitter.jsonl, byte for byte
    meta = json.dumps(
        {
            "node_id": "3",
            "prompt_id": PID,
            "display_node_id": "3",
            "parent_node_id": None,
            "real_node_id": "3",
            "image_type": "image/jpeg",
        }
    ).encode()
    assert len(meta) == 166
    image = jpeg()
    event = decode_binary(struct.pack(">II", 4, len(meta)) + meta + image)
    assert isinstance(event, Preview)
    assert (event.image, event.format, event.node_id, event.prompt_id) == (image, "jpeg", "3", PID)
    assert event.metadata["real_node_id"] == "3"


def test_binary_text_frame_as_recorded():
    # first_bytes_hex of ws/g_binary_text_frame.submitter.jsonl (the whole 45-byte frame)
    frame = bytes.fromhex(
        "00000003000000013277696474683a2036342c206865696768743a2036340a2062617463682073697a653a2031"
    )
    assert decode_binary(frame) == BinaryText(node_id="2", text="width: 64, height: 64\n batch size: 1")


def test_unknown_and_broken_binary_frames_do_not_crash():
    assert decode_binary(struct.pack(">I", 2) + b"xx").type == "binary:2"
    assert isinstance(decode_binary(b"\x00\x00"), UnknownEvent)
    assert isinstance(decode_binary(struct.pack(">II", 4, 9999) + b"{}"), UnknownEvent)


def test_text_frames_become_typed_events():
    status = '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "clientM"}}'
    assert decode_text(status) == Status(queue_remaining=0, sid="clientM")
    done = json.dumps({"type": "executing", "data": {"node": None, "prompt_id": PID}})
    assert decode_text(done) == Executing(prompt_id=PID, node=None)
    step = json.dumps({"type": "progress", "data": {"value": 1, "max": 4, "prompt_id": PID, "node": "3"}})
    assert decode_text(step) == Progress(prompt_id=PID, node="3", value=1, max=4)


def test_reconnect_executing_has_no_prompt_id():
    # ws/h_reconnect.new_socket.jsonl
    assert decode_text('{"type": "executing", "data": {"node": "3"}}') == Executing(prompt_id=None, node="3")


def test_progress_state_nodes_are_typed():
    data = {"prompt_id": PID, "nodes": {"3": {"value": 1, "max": 4, "state": "running", "node_id": "3"}}}
    event = decode_text(json.dumps({"type": "progress_state", "data": data}))
    assert isinstance(event, ProgressState)
    assert (event.nodes["3"].state, event.nodes["3"].value, event.nodes["3"].max) == ("running", 1, 4)


@pytest.mark.parametrize(
    "frame",
    [
        # As ComfyUI writes it: read no further than the prompt id until the nodes are asked for.
        json.dumps({"type": "progress_state", "data": {"prompt_id": PID, "nodes": {"3": {"value": 2, "max": 4}}}}),
        # Any other layout is decoded whole.
        json.dumps({"data": {"nodes": {"3": {"value": 2, "max": 4}}, "prompt_id": PID}, "type": "progress_state"}),
        json.dumps({"type": "progress_state", "data": {"prompt_id": PID, "nodes": {"3": {"value": 2, "max": 4}}}},
                   indent=1),
    ],
)  # fmt: skip
def test_progress_state_gives_its_prompt_and_nodes_whatever_the_json_layout(frame):
    event = decode_text(frame)

    assert isinstance(event, ProgressState)
    assert event.prompt_id == PID
    assert event.nodes == {"3": NodeProgress("3", "", 2, 4)}


def test_a_progress_state_whose_nodes_do_not_decode_has_none():
    event = decode_text('{"type": "progress_state", "data": {"prompt_id": "p1", "nodes": {"3": [oops')

    assert event.prompt_id == "p1"
    assert event.nodes == {}


def test_execution_error_keeps_comfyui_fields():
    data = {
        "prompt_id": PID,
        "node_id": "1",
        "node_type": "LoadImage",
        "executed": [],
        "exception_message": "cannot identify image file '/opt/ComfyUI/input/not_an_image.png'\n",
        "exception_type": "PIL.UnidentifiedImageError",
        "traceback": ["  File ..."],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": 1795417950420,
    }
    event = decode_text(json.dumps({"type": "execution_error", "data": data}))
    assert isinstance(event, ExecutionError)
    assert (event.node_id, event.node_type) == ("1", "LoadImage")
    assert event.exception_type == "PIL.UnidentifiedImageError"


def test_unknown_or_malformed_text_frames_become_unknown_events():
    assert decode_text('{"type": "crystools.monitor", "data": {"cpu": 3}}') == UnknownEvent(
        "crystools.monitor", {"cpu": 3}
    )
    assert isinstance(decode_text("not json"), UnknownEvent)
    assert isinstance(decode_text('{"type": "progress", "data": {}}'), UnknownEvent)
