"""Typed ComfyUI /ws events and their decoding from text and binary frames."""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutputFile:
    """One file a node wrote, as listed by `executed` and /history."""

    node_id: str
    filename: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class Status:
    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True)
class FeatureFlags:
    flags: dict[str, Any]


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionCached:
    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Executing:
    prompt_id: str | None
    node: str | None
    display_node: str | None = None


@dataclass(frozen=True)
class Progress:
    prompt_id: str | None
    node: str | None
    value: int | float
    max: int | float


@dataclass(frozen=True)
class NodeProgress:
    node_id: str
    state: str
    value: int | float
    max: int | float


@dataclass(frozen=True)
class ProgressState:
    """Every node's progress in the running prompt. ComfyUI sends one after each step and each node (34 of a
    20-step prompt's 70 text frames, and the longest), and the executor reads none of them: the node map is
    decoded when first read, from `sent`, the map or the frame's JSON text."""

    prompt_id: str | None
    sent: dict[str, Any] | str = field(repr=False)

    @functools.cached_property
    def nodes(self) -> dict[str, NodeProgress]:
        try:
            nodes = json.loads(self.sent)["data"]["nodes"] if isinstance(self.sent, str) else self.sent
            return {
                node_id: NodeProgress(node_id, item.get("state", ""), item.get("value", 0), item.get("max", 1))
                for node_id, item in (nodes or {}).items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            return {}


@dataclass(frozen=True)
class Executed:
    prompt_id: str | None
    node: str
    output: dict[str, Any]
    display_node: str | None = None

    @property
    def files(self) -> tuple[OutputFile, ...]:
        """Files listed in this node's output (`images`, `gifs`, ...)."""
        return files_of(self.node, self.output)


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_message: str
    exception_type: str
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()
    current_inputs: dict[str, Any] = field(default_factory=dict, repr=False)
    current_outputs: Any = field(default=None, repr=False)
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class Preview:
    image: bytes = field(repr=False)
    format: str
    node_id: str | None = None
    prompt_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BinaryText:
    node_id: str
    text: str


@dataclass(frozen=True)
class UnknownEvent:
    type: str
    data: Any = field(repr=False)


ComfyEvent = (
    Status
    | FeatureFlags
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | Preview
    | BinaryText
    | UnknownEvent
)

# server.py BinaryEventTypes / image format ids; 2 (PNG) was never recorded (README §8.2).
_IMAGE_FORMATS = {1: "jpeg", 2: "png"}
_MIME_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"}


def files_of(node_id: str, output: dict[str, Any]) -> tuple[OutputFile, ...]:
    """The files in one node's output dict (any list of {filename, subfolder, type})."""
    files = []
    for items in output.values():
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, dict) and "filename" in item:
                files.append(
                    OutputFile(node_id, item["filename"], item.get("subfolder", ""), item.get("type", "output"))
                )
    return tuple(files)


# How ComfyUI writes a progress_state frame (json.dumps of {"type", "data": {"prompt_id", "nodes"}}): one is
# taken apart no further than its prompt id (see ProgressState).
PROGRESS_STATE_HEAD = '{"type": "progress_state", "data": {"prompt_id": "'
PROGRESS_STATE_NODES = '", "nodes": '


def decode_text(raw: str) -> ComfyEvent:
    """Decode one JSON text frame; anything unexpected becomes an UnknownEvent."""
    if raw.startswith(PROGRESS_STATE_HEAD):
        end = raw.find('"', len(PROGRESS_STATE_HEAD))
        prompt_id = raw[len(PROGRESS_STATE_HEAD) : end]
        if end > 0 and "\\" not in prompt_id and raw.startswith(PROGRESS_STATE_NODES, end):
            return ProgressState(prompt_id, raw)
    try:
        message = json.loads(raw)
        return decode_message(message["type"], message.get("data") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return UnknownEvent("invalid", raw)


def decode_message(kind: str, data: dict[str, Any]) -> ComfyEvent:
    """Decode one {type, data} message (a /ws frame or a /history `messages` pair)."""
    decoder = _TEXT_DECODERS.get(kind)
    try:
        return decoder(data) if decoder else UnknownEvent(kind, data)
    except (KeyError, TypeError, AttributeError):
        return UnknownEvent(kind, data)


def decode_binary(frame: bytes) -> ComfyEvent:
    """Decode one binary frame (u32 BE event type first); unknown or short frames become UnknownEvent."""
    try:
        (event,) = struct.unpack_from(">I", frame, 0)
        if event == 1:
            return _preview_type1(frame)
        if event == 3:
            return _binary_text(frame)
        if event == 4:
            return _preview_type4(frame)
    except (struct.error, ValueError, UnicodeDecodeError):
        return UnknownEvent("binary", frame)
    return UnknownEvent(f"binary:{event}", frame)


def _preview_type1(frame: bytes) -> Preview:
    # u32 event 1 | u32 format (1 = JPEG) | image (ws/m_ksampler_warm.submitter.jsonl)
    (fmt,) = struct.unpack_from(">I", frame, 4)
    return Preview(image=frame[8:], format=_IMAGE_FORMATS.get(fmt, str(fmt)))


def _preview_type4(frame: bytes) -> Preview:
    # u32 event 4 | u32 metadata length | metadata JSON | image (ws/m_ksampler_type4.submitter.jsonl)
    (length,) = struct.unpack_from(">I", frame, 4)
    if 8 + length > len(frame):
        raise ValueError("metadata longer than frame")
    meta = json.loads(frame[8 : 8 + length].decode("utf-8"))
    fmt = _MIME_FORMATS.get(meta.get("image_type", ""), "jpeg")
    return Preview(frame[8 + length :], fmt, meta.get("node_id"), meta.get("prompt_id"), meta)


def _binary_text(frame: bytes) -> BinaryText:
    # u32 event 3 | u32 node-id length | node id | text (ws/g_binary_text_frame.submitter.jsonl)
    (length,) = struct.unpack_from(">I", frame, 4)
    if 8 + length > len(frame):
        raise ValueError("node id longer than frame")
    node_id = frame[8 : 8 + length].decode("utf-8")
    return BinaryText(node_id=node_id, text=frame[8 + length :].decode("utf-8"))


def _status(data: dict) -> Status:
    # Only the first status after connecting carries `sid` (README §3.1).
    remaining = data["status"]["exec_info"]["queue_remaining"]
    return Status(queue_remaining=remaining, sid=data.get("sid"))


def _executing(data: dict) -> Executing:
    # The reconnect `executing` carries only `node`, no prompt_id (ws/h_reconnect.new_socket.jsonl).
    return Executing(data.get("prompt_id"), data.get("node"), data.get("display_node"))


def _progress_state(data: dict) -> ProgressState:
    return ProgressState(data.get("prompt_id"), data.get("nodes") or {})


def _execution_error(data: dict) -> ExecutionError:
    return ExecutionError(
        prompt_id=data["prompt_id"],
        node_id=data.get("node_id"),
        node_type=data.get("node_type"),
        exception_message=data.get("exception_message", ""),
        exception_type=data.get("exception_type", ""),
        traceback=tuple(data.get("traceback") or ()),
        executed=tuple(data.get("executed") or ()),
        current_inputs=data.get("current_inputs") or {},
        current_outputs=data.get("current_outputs"),
        timestamp=data.get("timestamp"),
    )


_TEXT_DECODERS = {
    "status": _status,
    "feature_flags": FeatureFlags,
    "execution_start": lambda d: ExecutionStart(d["prompt_id"], d.get("timestamp")),
    "execution_cached": lambda d: ExecutionCached(d["prompt_id"], tuple(d.get("nodes") or ())),
    "executing": _executing,
    "progress": lambda d: Progress(d.get("prompt_id"), d.get("node"), d["value"], d["max"]),
    "progress_state": _progress_state,
    "executed": lambda d: Executed(d.get("prompt_id"), d["node"], d.get("output") or {}, d.get("display_node")),
    "execution_success": lambda d: ExecutionSuccess(d["prompt_id"], d.get("timestamp")),
    "execution_error": _execution_error,
    "execution_interrupted": lambda d: ExecutionInterrupted(
        d["prompt_id"],
        d.get("node_id"),
        d.get("node_type"),
        tuple(d.get("executed") or ()),
        d.get("timestamp"),
    ),
}
