"""The prompt worker: one prompt at a time, node by node, with ComfyUI's message order (README §3.4, §8.1)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from typing import Any

from . import behaviours, images, outputs
from .behaviours import NodeError
from .graph import execution_order
from .runtime import Runtime

logger = logging.getLogger(__name__)
FAKE_TRACEBACK = ['  File "/opt/ComfyUI/execution.py", line 496, in execute\n    output_data, output_ui = ...\n']


class Interrupted(Exception):
    """Raised at a node start or sampler step after POST /interrupt."""


def now_ms() -> int:
    return int(time.time() * 1000)


async def worker(rt: Runtime) -> None:
    """Take prompts off the heap forever; status broadcasts as in ws/q_two_prompts_queued."""
    while True:
        while not rt.queue.pending():
            rt.idle.set()
            rt.wakeup.clear()
            await rt.wakeup.wait()
        rt.idle.clear()
        await rt.wait_until_ready()
        item = rt.queue.pop()
        if item is None:
            continue
        rt.broadcast_status()
        client_id = item[3].get("client_id")
        try:
            await PromptRun(rt, item).run()
        except Exception:
            # The worker must outlive any fake-side bug, or every later prompt would hang.
            logger.exception("fake ComfyUI: prompt %s crashed the executor", item[1])
        rt.queue.running = None
        rt.running_prompt_id = None
        # Hand-over order: execution_success -> status -> executing null (README §8.1).
        rt.broadcast_status()
        if client_id is not None:
            rt.hub.emit("executing", {"node": None, "prompt_id": item[1]}, client_id)
        rt.hub.running_client_id = None
        rt.hub.last_node_id = None


class PromptRun:
    """Executes one queue item and writes its history entry."""

    def __init__(self, rt: Runtime, item: tuple) -> None:
        self.rt = rt
        self.number, self.prompt_id, self.prompt, self.extra, self.outputs = item
        self.client_id: str | None = self.extra.get("client_id")
        self.messages: list[list[Any]] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.values: dict[str, list[Any]] = {}
        self.executed: list[str] = []
        self.ui: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Job messages go to the job's client only, never broadcast (f_no_client_id)."""
        if self.client_id is not None:
            self.rt.hub.emit(event, data, self.client_id)

    def record(self, event: str, data: dict[str, Any]) -> None:
        self.messages.append([event, data])
        self.send(event, data)

    async def run(self) -> None:
        rt = self.rt
        rt.interrupted = False
        rt.running_prompt_id = self.prompt_id
        rt.hub.running_client_id = self.client_id
        self.record("execution_start", {"prompt_id": self.prompt_id, "timestamp": now_ms()})
        self.compute_keys()
        cached = [node_id for node_id in self.prompt if self.keys[node_id] in rt.cache]
        self.record("execution_cached", {"nodes": cached, "prompt_id": self.prompt_id, "timestamp": now_ms()})
        await self.execute_all(cached)

    async def execute_all(self, cached: list[str]) -> None:
        try:
            for node_id in execution_order(self.prompt, self.outputs, set(cached), self.is_output):
                await self.execute_node(node_id)
        except Interrupted:
            return self.fail("execution_interrupted", self.interrupted_data())
        except NodeError as ex:
            return self.fail("execution_error", self.error_data(ex))
        except Exception as ex:  # a fake-side surprise still ends the prompt the ComfyUI way
            error = NodeError(type(ex).__name__, str(ex))
            return self.fail("execution_error", self.error_data(error))
        self.finish()

    def is_output(self, node_id: str) -> bool:
        info = self.rt.class_info(self.prompt[node_id]["class_type"]) or {}
        return bool(info.get("output_node"))

    def compute_keys(self) -> None:
        for node_id in self.prompt:
            self.keys[node_id] = self._key(node_id, ())
        # Like ComfyUI's classic cache, only entries of the current prompt survive.
        used = set(self.keys.values())
        for key in [k for k in self.rt.cache if k not in used]:
            del self.rt.cache[key]

    def _key(self, node_id: str, path: tuple[str, ...]) -> str:
        """Input signature: class, literal inputs and the signatures of linked nodes (memoised)."""
        if node_id in self.keys:
            return self.keys[node_id]
        node = self.prompt[node_id]
        parts: list[Any] = [node["class_type"]]
        for name, value in sorted(node.get("inputs", {}).items()):
            source = str(value[0]) if isinstance(value, list) and len(value) == 2 else None
            if source in self.prompt and source not in path:
                parts.append([name, self._key(source, (*path, node_id)), value[1]])
            else:
                parts.append([name, value])
        if node["class_type"] in ("LoadImage", "LoadImageMask"):
            parts.append(self._file_stamp(str(node.get("inputs", {}).get("image", ""))))
        self.keys[node_id] = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
        return self.keys[node_id]

    def _file_stamp(self, name: str) -> str:
        path = os.path.join(self.rt.dirs.input, name)
        try:
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return "missing"

    def set_progress(self, node_id: str, value: Any, maximum: Any, state: str) -> None:
        self.progress[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        # progress_state goes to the job's client, or to everyone without one (ws/f_no_client_id).
        self.rt.hub.emit(
            "progress_state", {"prompt_id": self.prompt_id, "nodes": dict(self.progress)}, self.client_id
        )

    def finish_progress(self, node_id: str, cached: bool) -> None:
        current = self.progress.get(node_id)
        if cached:
            self.set_progress(node_id, 1, 1, "finished")  # cached replays use integers (ws/b_cached)
        elif current and isinstance(current["max"], int):
            self.set_progress(node_id, current["max"], current["max"], "finished")
        else:
            self.set_progress(node_id, 1.0, 1.0, "finished")

    async def execute_node(self, node_id: str) -> None:
        class_type = self.prompt[node_id]["class_type"]
        key = self.keys[node_id]
        if key in self.rt.cache:
            # A cached output node replays its `executed` with the old files (ws/b_cached).
            self.values[node_id], ui = self.rt.cache[key]
            self.emit_executed(node_id, ui)
            self.finish_progress(node_id, cached=True)
            return
        self.set_progress(node_id, 0.0, 1.0, "running")
        self.rt.hub.last_node_id = node_id
        self.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id})
        # The interrupt is seen when the next node starts, after its `executing` (ws/d_interrupted).
        if self.rt.interrupted:
            raise Interrupted
        await self.apply_faults(node_id, class_type, None)
        values = self.input_values(node_id)
        info = self.rt.class_info(class_type) or {"output": [], "input": {}}
        sampler = behaviours.is_sampler(class_type, info)
        if sampler:
            await self.sample(node_id, class_type)
        elif self.rt.knobs.node_time > 0:
            await asyncio.sleep(self.rt.knobs.node_time)
        self.values[node_id] = behaviours.evaluate(class_type, info, values, self.rt.dirs.as_dict())
        if sampler:
            # A colour per sampler input signature (seed...), so different generations differ on disk.
            colour = int(key[:6], 16)
            self.values[node_id] = [v and {**v, "color": colour} for v in self.values[node_id]]
        ui = outputs.node_ui(self.rt, self, node_id, class_type, info, values)
        self.rt.cache[key] = (self.values[node_id], ui)
        self.emit_executed(node_id, ui)
        self.executed.append(node_id)
        self.finish_progress(node_id, cached=False)

    def emit_executed(self, node_id: str, ui: dict[str, Any] | None) -> None:
        if not ui:
            return
        self.ui[node_id] = ui
        self.send(
            "executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id}
        )

    def input_values(self, node_id: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in self.prompt[node_id].get("inputs", {}).items():
            if isinstance(value, list) and len(value) == 2:
                source = self.source_values(str(value[0]))
                values[name] = source[int(value[1])] if int(value[1]) < len(source) else None
            else:
                values[name] = value
        return values

    def source_values(self, node_id: str) -> list[Any]:
        if node_id not in self.values and self.keys.get(node_id) in self.rt.cache:
            self.values[node_id] = self.rt.cache[self.keys[node_id]][0]
        return self.values.get(node_id, [])

    async def sample(self, node_id: str, class_type: str) -> None:
        """Per step: progress_state -> progress -> binary 1, or progress_state -> binary 4 -> progress."""
        knobs = self.rt.knobs
        steps = knobs.steps_override or behaviours.sampler_steps(node_id, self.prompt)
        for step in range(1, steps + 1):
            if knobs.step_time > 0:
                await asyncio.sleep(knobs.step_time)
            # KSampler polls the interrupt flag every step (ws/p_interrupt_during_sampling).
            if self.rt.interrupted:
                raise Interrupted
            self.set_progress(node_id, step, steps, "running")
            progress = {"value": step, "max": steps, "prompt_id": self.prompt_id, "node": node_id}
            self.emit_step(node_id, step, steps, progress)
            await self.apply_faults(node_id, class_type, step)

    def emit_step(self, node_id: str, step: int, steps: int, progress: dict[str, Any]) -> None:
        hub = self.rt.hub
        if not self.rt.knobs.previews:
            hub.emit("progress", progress, self.client_id)
            return
        jpeg = images.preview_jpeg(step, steps)
        if hub.wants_metadata(self.client_id):
            hub.emit_binary(images.preview_frame_with_metadata(jpeg, node_id, self.prompt_id), self.client_id)
            hub.emit("progress", progress, self.client_id)
        else:
            hub.emit("progress", progress, self.client_id)
            hub.emit_binary(images.preview_frame(jpeg), self.client_id)

    async def apply_faults(self, node_id: str, class_type: str, step: int | None) -> None:
        where = {"node": node_id, "class_type": class_type, "at_step": step}
        if fault := self.rt.take_fault("crash", **where):
            self.rt.on_crash(fault.get("restart_after"))
            await asyncio.Event().wait()
        if self.rt.take_fault("hang", **where):
            await asyncio.Event().wait()  # silent forever, socket stays open
        if fault := self.rt.take_fault("runtime_error", **where):
            exception_type = fault.get("exception_type", "RuntimeError")
            raise NodeError(exception_type, fault.get("exception_message", "Fake ComfyUI runtime error"))

    def interrupted_data(self) -> dict[str, Any]:
        node_id = self.rt.hub.last_node_id or ""
        return {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt.get(node_id, {}).get("class_type", ""),
            "executed": list(reversed(self.executed)),
            "timestamp": now_ms(),
        }

    def error_data(self, ex: NodeError) -> dict[str, Any]:
        node_id = self.rt.hub.last_node_id or ""
        inputs = self.prompt.get(node_id, {}).get("inputs", {})
        current_inputs = {
            name: ["tensor([[[[0.5000, 0.5000, 0.5000]]]])"] if isinstance(value, list) else [value]
            for name, value in inputs.items()
        }
        return {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt.get(node_id, {}).get("class_type", ""),
            "executed": list(reversed(self.executed)),
            "exception_message": ex.message + "\n",  # format_exception_only ends with a newline
            "exception_type": ex.exception_type,
            "traceback": list(FAKE_TRACEBACK),
            "current_inputs": current_inputs,
            "current_outputs": list(reversed(list(self.prompt))),
            "timestamp": now_ms(),
        }

    def fail(self, event: str, data: dict[str, Any]) -> None:
        # History first, then the message (timing/history_race_check.jsonl); errors keep no outputs.
        self.messages.append([event, data])
        self.write_history("error", False, {}, {})
        self.send(event, data)

    def finish(self) -> None:
        data = {"prompt_id": self.prompt_id, "timestamp": now_ms()}
        self.messages.append(["execution_success", data])
        meta = {
            node_id: {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
            for node_id in self.ui
        }
        self.write_history("success", True, dict(self.ui), meta)
        self.send("execution_success", data)

    def write_history(self, status: str, completed: bool, ui: dict[str, Any], meta: dict[str, Any]) -> None:
        item = [self.number, self.prompt_id, self.prompt, self.extra, self.outputs]
        self.rt.history.add(
            self.prompt_id,
            {
                "prompt": item,
                "outputs": ui,
                "status": {"status_str": status, "completed": completed, "messages": self.messages},
                "meta": meta,
            },
        )
