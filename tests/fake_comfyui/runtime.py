"""Per-process state of the fake: what a real ComfyUI loses on a crash (queue, history, cache, sockets)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import objectinfo
from .hub import Hub
from .state import History, Knobs, PromptQueue, Stats
from .validation import annotated_exists


@dataclass
class Dirs:
    input: str
    output: str
    temp: str

    def as_dict(self) -> dict[str, str]:
        return {"input": self.input, "output": self.output, "temp": self.temp}


class Runtime:
    """Queue, history, execution cache and socket table of one (re)start of the server."""

    def __init__(self, knobs: Knobs, stats: Stats, dirs: Dirs, on_crash: Callable[[float | None], None]) -> None:
        self.knobs = knobs
        self.stats = stats
        self.dirs = dirs
        self.on_crash = on_crash
        self.queue = PromptQueue()
        self.history = History()
        self.hub = Hub(objectinfo.static_responses()["features"])
        self.cache: dict[str, tuple[list[Any], dict[str, Any] | None]] = {}
        self.interrupted = False
        self.running_prompt_id: str | None = None
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def broadcast_status(self) -> None:
        self.hub.emit("status", {"status": self.queue_info()}, None)

    def class_info(self, class_name: str) -> dict[str, Any] | None:
        return objectinfo.class_info(class_name, self.knobs.models, self.dirs.input)

    def input_exists(self, name: str) -> bool:
        return annotated_exists(name, self.dirs.as_dict())

    def take_fault(self, kind: str, **where: Any) -> dict[str, Any] | None:
        """The active fault of `kind` if it matches `where` (node/class_type/at_step); counts down `count`."""
        fault = self.knobs.fault
        if not fault or fault.get("kind") != kind or not _fault_matches(fault, where):
            return None
        count = fault.get("count", 1 if kind == "crash" else None)
        if count is not None:
            fault["count"] = count - 1
            if fault["count"] <= 0:
                self.knobs.fault = None
        return fault

    async def wait_until_ready(self) -> None:
        """slow_start: hold requests and prompts until the warm-up window has passed."""
        fault = self.knobs.fault
        if fault and fault.get("kind") == "slow_start":
            delay = fault["ready_at"] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def clean_temp(self) -> None:
        # ComfyUI empties its temp folder at start-up.
        for name in os.listdir(self.dirs.temp):
            path = os.path.join(self.dirs.temp, name)
            if os.path.isfile(path):
                os.remove(path)


def _fault_matches(fault: dict[str, Any], where: dict[str, Any]) -> bool:
    if "at_step" in fault and fault["at_step"] != where.get("at_step"):
        return False
    if "at_step" not in fault and where.get("at_step") is not None:
        return False
    return all(key not in fault or str(fault[key]) == str(where.get(key)) for key in ("node", "class_type"))
