"""Knobs, counters, the prompt queue and the history of one fake ComfyUI."""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("crash", "hang", "slow_start", "runtime_error", "reject")

DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": [
        "tiny-sd15-random.ckpt",
        "v1-5-pruned-emaonly.safetensors",
        "sd_xl_base_1.0.safetensors",
        "sd_xl_refiner_1.0.safetensors",
        "flux1-dev-fp8.safetensors",
        "flux1-schnell-fp8.safetensors",
    ],
    "loras": ["example_lora.safetensors"],
    "vae": ["ae.safetensors", "sdxl_vae.safetensors", "vae-ft-mse-840000-ema-pruned.safetensors"],
    "diffusion_models": ["flux1-dev.safetensors", "flux1-schnell.safetensors"],
    "text_encoders": ["clip_l.safetensors", "t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors"],
    "clip_vision": ["clip_vision_g.safetensors"],
    "controlnet": ["control_v11p_sd15_canny.pth"],
    "upscale_models": ["RealESRGAN_x4plus.pth"],
}


@dataclass
class Knobs:
    """Run-time behaviour; every field can be changed with FakeComfyUI.configure()."""

    step_time: float = 0.0
    node_time: float = 0.0
    steps_override: int | None = None
    previews: bool = True
    exact_png: bool = True
    models: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_MODELS.items()})
    require_token: str | None = None
    fault: dict[str, Any] | None = None

    def update(self, **knobs: Any) -> None:
        for name, value in knobs.items():
            if not hasattr(self, name):
                raise TypeError(f"unknown FakeComfyUI knob: {name!r}")
            if name == "fault":
                value = parse_fault(value)
            setattr(self, name, value)


def parse_fault(fault: Any) -> dict[str, Any] | None:
    """Accept None, a kind name ("crash") or a dict with a "kind" key; return a normalised dict."""
    if fault is None:
        return None
    if isinstance(fault, str):
        fault = {"kind": fault}
    if not isinstance(fault, dict) or fault.get("kind") not in FAULT_KINDS:
        raise ValueError(f"fault must be None or a dict with kind in {FAULT_KINDS}, got {fault!r}")
    fault = dict(fault)
    if "at_node" in fault:
        fault["node"] = str(fault.pop("at_node"))
    if fault["kind"] == "slow_start":
        # The warm-up window is measured from the moment the fault is set (or the next restart).
        fault.setdefault("seconds", 1.0)
        fault["ready_at"] = time.monotonic() + float(fault["seconds"])
    return fault


@dataclass
class Stats:
    """What tests count; lives across crash/restart of the same FakeComfyUI."""

    prompts_received: int = 0
    prompts_rejected: int = 0
    received_prompts: list[dict[str, Any]] = field(default_factory=list)
    last_prompt_body: Any = None
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    frees: int = 0
    ws_connections: int = 0
    connections: int = 0  # TCP connections that sent a request (a /ws upgrade is one too)
    crashes: int = 0
    restarts: int = 0
    request_log: list[tuple[str, str]] = field(default_factory=list)
    requests_per_path: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.snapshot()[key]

    def log_request(self, method: str, path: str) -> None:
        with self.lock:
            self.request_log.append((method, path))
            self.requests_per_path[path] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "prompts_received": self.prompts_received,
                "prompts_rejected": self.prompts_rejected,
                "received_prompts": list(self.received_prompts),
                "last_prompt_body": self.last_prompt_body,
                "interrupts": list(self.interrupts),
                "uploads": list(self.uploads),
                "frees": self.frees,
                "ws_connections": self.ws_connections,
                "connections": self.connections,
                "crashes": self.crashes,
                "restarts": self.restarts,
                "request_log": [list(x) for x in self.request_log],
                "requests_per_path": dict(self.requests_per_path),
            }


QueueItem = tuple  # (number, prompt_id, prompt, extra_data, outputs_to_execute)


class PromptQueue:
    """A heap of 5-element items, like ComfyUI's PromptQueue.

    Pending items are listed in heap order, not sorted (http/get_queue_with_items.json).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, QueueItem]] = []
        self._seq = 0
        self.running: QueueItem | None = None
        self.number = 0

    def next_number(self, body: Any) -> float | int:
        # A rejected post consumes a number too (http/post_prompt_validation_errors.json cases 6 and 16).
        if isinstance(body, dict) and "number" in body:
            return float(body["number"])
        number = self.number
        if isinstance(body, dict) and body.get("front"):
            number = -number
        self.number += 1
        return number

    def put(self, item: QueueItem) -> None:
        # The sequence number breaks ties the way ComfyUI's task counter does.
        heapq.heappush(self._heap, (item[0], self._seq, item))
        self._seq += 1

    def pop(self) -> QueueItem | None:
        if not self._heap:
            return None
        self.running = heapq.heappop(self._heap)[2]
        return self.running

    def remaining(self) -> int:
        return len(self._heap) + (1 if self.running is not None else 0)

    def pending(self) -> list[QueueItem]:
        return [entry[2] for entry in self._heap]

    def delete(self, prompt_id: str) -> bool:
        for index, entry in enumerate(self._heap):
            if entry[2][1] == prompt_id:
                self._heap.pop(index)
                heapq.heapify(self._heap)
                return True
        return False

    def clear(self) -> bool:
        had_items = bool(self._heap)
        self._heap.clear()
        return had_items


class History:
    """Finished prompts in insertion order (http/get_history_full_sample_3_entries.json)."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def add(self, prompt_id: str, entry: dict[str, Any]) -> None:
        self.entries[prompt_id] = entry

    def page(self, max_items: int | None, offset: int) -> dict[str, Any]:
        # Same loop as ComfyUI's get_history: offset counts from the oldest, a negative offset means
        # "the newest max_items", still oldest first (http/get_history_max_items_*.json).
        if offset < 0 and max_items is not None:
            offset = len(self.entries) - max_items
        out: dict[str, Any] = {}
        for index, (key, entry) in enumerate(self.entries.items()):
            if index >= offset:
                out[key] = entry
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def delete(self, prompt_id: str) -> None:
        self.entries.pop(prompt_id, None)

    def clear(self) -> None:
        self.entries.clear()
