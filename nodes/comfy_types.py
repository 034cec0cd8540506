"""Frozen result types of the ComfyUI client and their parsing from ComfyUI's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodes.comfy_events import (
    ComfyEvent,
    ExecutionError,
    ExecutionInterrupted,
    OutputFile,
    decode_message,
    files_of,
)


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class SystemStats:
    comfyui_version: str
    python_version: str
    pytorch_version: str
    ram_total: int
    ram_free: int
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class QueuedPrompt:
    prompt_id: str
    number: int | float
    node_errors: dict[str, Any]


@dataclass(frozen=True)
class QueueItem:
    number: int | float
    prompt_id: str
    graph: dict[str, Any] = field(repr=False)
    extra_data: dict[str, Any]
    outputs_to_execute: tuple[str, ...]

    @property
    def client_id(self) -> str | None:
        """The clientId whose socket receives this prompt's events."""
        return self.extra_data.get("client_id")


@dataclass(frozen=True)
class Queue:
    running: tuple[QueueItem, ...]
    pending: tuple[QueueItem, ...]


@dataclass(frozen=True)
class History:
    prompt_id: str
    status_str: str | None
    completed: bool
    outputs: tuple[OutputFile, ...]
    messages: tuple[ComfyEvent, ...] = field(repr=False)
    number: int | float | None = None

    @property
    def failure(self) -> ExecutionError | ExecutionInterrupted | None:
        """The execution_error / execution_interrupted message of a failed run."""
        found = [m for m in self.messages if isinstance(m, ExecutionError | ExecutionInterrupted)]
        return found[-1] if found else None


@dataclass(frozen=True)
class UploadedFile:
    name: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class Location:
    state: str  # "running" | "pending" | "finished" | "unknown"
    item: QueueItem | None = None
    history: History | None = None


@dataclass(frozen=True)
class PromptResult:
    prompt_id: str
    outputs: tuple[OutputFile, ...]
    # The /history entry, when the outputs were read from it (not when the socket showed the whole run).
    history: History | None = field(default=None, repr=False)


def parse_system_stats(data: dict[str, Any]) -> SystemStats:
    """SystemStats from GET /system_stats."""
    system = data.get("system", {})
    devices = tuple(
        Device(d.get("name", ""), d.get("type", ""), d.get("vram_total", 0), d.get("vram_free", 0))
        for d in data.get("devices", [])
    )
    return SystemStats(
        comfyui_version=system.get("comfyui_version", ""),
        python_version=system.get("python_version", ""),
        pytorch_version=system.get("pytorch_version", ""),
        ram_total=system.get("ram_total", 0),
        ram_free=system.get("ram_free", 0),
        devices=devices,
    )


def parse_queue_item(item: list[Any]) -> QueueItem:
    """One /queue item."""
    # Items are [number, prompt_id, graph, extra_data, outputs_to_execute] (http/get_queue_with_items.json).
    number, prompt_id, graph, extra_data, outputs = (list(item) + [None] * 5)[:5]
    return QueueItem(number, prompt_id, graph or {}, extra_data or {}, tuple(outputs or ()))


def parse_history(prompt_id: str, entry: dict[str, Any]) -> History:
    """One /history entry."""
    status = entry.get("status") or {}
    outputs = tuple(f for node_id, out in (entry.get("outputs") or {}).items() for f in files_of(node_id, out))
    messages = tuple(decode_message(kind, data) for kind, data in status.get("messages") or ())
    prompt = entry.get("prompt") or [None]
    return History(
        prompt_id, status.get("status_str"), bool(status.get("completed")), outputs, messages, prompt[0]
    )
