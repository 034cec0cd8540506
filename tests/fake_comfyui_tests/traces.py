"""Load the recorded ComfyUI traces and reduce frames to what must match (no ids, no times)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

PROTOCOL_DIR = Path(
    os.environ.get("COMFYUI_PROTOCOL_DIR", Path(__file__).resolve().parents[3] / "shared" / "comfyui-protocol")
)


def require_traces() -> None:
    if not PROTOCOL_DIR.is_dir():
        pytest.skip(f"recorded traces not found in {PROTOCOL_DIR}")


def http_trace(name: str) -> Any:
    require_traces()
    with open(PROTOCOL_DIR / "http" / name, encoding="utf-8") as f:
        return json.load(f)


def ws_trace(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, frames) of ws/<name>.jsonl; frames exclude client->server lines and socket_end."""
    require_traces()
    with open(PROTOCOL_DIR / "ws" / f"{name}.jsonl", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    frames = [line for line in lines[1:] if "frame" in line]
    return lines[0]["_header"], frames


def header_json(header: dict[str, Any], key: str) -> Any:
    """Header values holding an exchange are sometimes stored as JSON strings."""
    value = header[key]
    return json.loads(value) if isinstance(value, str) else value


def _progress_nodes(data: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        (node_id, e["state"], e["value"], type(e["value"]).__name__, e["max"], tuple(sorted(e)))
        for node_id, e in data["nodes"].items()
    )


def _detail(kind: str, data: dict[str, Any]) -> Any:
    if kind == "status":
        return data["status"]["exec_info"]["queue_remaining"]
    if kind in ("executing", "executed"):
        return data.get("node")
    if kind == "execution_cached":
        return tuple(data["nodes"])
    if kind == "progress_state":
        return _progress_nodes(data)
    if kind == "progress":
        return data["value"], data["max"], data["node"]
    if kind in ("execution_error", "execution_interrupted"):
        return data["node_id"], data["node_type"], tuple(sorted(data["executed"]))
    return None


def normalise_text(msg: dict[str, Any]) -> tuple[Any, ...]:
    data = msg["data"]
    return ("text", msg["type"], tuple(sorted(data)), _detail(msg["type"], data))


def normalise_recorded(frames: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for frame in frames:
        if frame["frame"] == "binary":
            out.append(("binary", frame["event_type"]))
        else:
            out.append(normalise_text(frame["msg"]))
    return out


def normalise_live(frames: list[str | bytes]) -> list[tuple[Any, ...]]:
    out = []
    for frame in frames:
        if isinstance(frame, bytes):
            out.append(("binary", int.from_bytes(frame[:4], "big")))
        else:
            out.append(normalise_text(json.loads(frame)))
    return out


def shape(value: Any) -> Any:
    """Structure of a JSON value: dict keys and value shapes, list element shapes, scalar types."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    return type(value).__name__
