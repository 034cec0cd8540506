"""FakeComfyUI: lifecycle of the fake on a real TCP port, in a daemon thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
import weakref
from typing import Any

from aiohttp import web
from PIL import Image

from . import executor
from .app import build_app
from .runtime import Dirs, Runtime
from .state import Knobs, Stats, parse_fault


def make_dirs() -> Dirs:
    root = os.path.realpath(tempfile.mkdtemp(prefix="fake_comfyui_"))
    dirs = Dirs(*(os.path.join(root, name) for name in ("input", "output", "temp")))
    for path in dirs.as_dict().values():
        os.makedirs(path)
    # A stock ComfyUI ships input/example.png: LoadImage lists it (http/get_object_info_LoadImage.json).
    Image.new("RGB", (64, 64), (128, 128, 128)).save(os.path.join(dirs.input, "example.png"))
    return dirs


class FakeComfyUI:
    """A protocol-faithful ComfyUI 0.3.64 stand-in; knobs, faults and counters are listed in __init__.py."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **knobs: Any) -> None:
        self.host = host
        self.port = port
        self.knobs = Knobs()
        self.knobs.update(**knobs)
        self.stats = Stats()
        self.dirs = make_dirs()
        self.rt: Runtime | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._crash_tasks: list[asyncio.Task[Any]] = []
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    # -- public API -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def start(self) -> FakeComfyUI:
        """Start listening; returns once the port accepts connections."""
        if self._thread is None:
            if not os.path.isdir(self.dirs.input):
                self.dirs = make_dirs()  # stop() removed them
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="fake-comfyui", daemon=True)
            self._thread.start()
        self._call(self._up())
        return self

    def configure(self, **knobs: Any) -> None:
        self.knobs_lock_update(knobs)

    def crash(self, restart_after: float | None = None) -> None:
        """Drop every socket without a close frame and stop listening (like SIGKILL).

        With `restart_after`, the port comes back by itself that many seconds later.
        """
        self._call(self._down(graceful=False))
        if restart_after is not None:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.crash_in_loop, restart_after)

    def restart(self) -> None:
        """Listen again on the same port with an empty queue and history, `number` from 0."""
        self._call(self._cancel_pending_restarts())
        self._call(self._down(graceful=False))
        with self.stats.lock:
            self.stats.restarts += 1
        self._call(self._up())

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._down(graceful=True))
        self._call(self._cancel_everything())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = self._thread = None
        shutil.rmtree(os.path.dirname(self.dirs.input), ignore_errors=True)

    def wait_idle(self, timeout: float = 10) -> None:
        """Block until nothing is running or pending."""
        deadline = time.monotonic() + timeout
        while self.rt is not None and (self.rt.queue.remaining() or not self.rt.idle.is_set()):
            if time.monotonic() > deadline:
                raise TimeoutError("FakeComfyUI still busy")
            time.sleep(0.01)

    def __enter__(self) -> FakeComfyUI:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters ---------------------------------------------------------------------------
    @property
    def prompts_received(self) -> int:
        return self.stats.prompts_received

    @property
    def received_prompts(self) -> list[dict[str, Any]]:
        return self.stats.received_prompts

    @property
    def last_prompt_body(self) -> Any:
        return self.stats.last_prompt_body

    @property
    def interrupts(self) -> list[dict[str, Any]]:
        return self.stats.interrupts

    @property
    def uploads(self) -> list[dict[str, Any]]:
        return self.stats.uploads

    @property
    def request_log(self) -> list[tuple[str, str]]:
        return self.stats.request_log

    @property
    def requests_per_path(self) -> dict[str, int]:
        return dict(self.stats.requests_per_path)

    def reset_stats(self) -> None:
        self.stats = Stats()
        if self.rt is not None:
            self.rt.stats = self.stats

    def describe(self) -> dict[str, Any]:
        rt = self.rt
        state = {
            "up": rt is not None,
            "queue_remaining": rt.queue.remaining() if rt else 0,
            "history_size": len(rt.history.entries) if rt else 0,
            "running_prompt_id": rt.running_prompt_id if rt else None,
        }
        return {**self.stats.snapshot(), **state, "knobs": self.knob_values(), "url": self.url}

    def knob_values(self) -> dict[str, Any]:
        return {name: getattr(self.knobs, name) for name in Knobs.__dataclass_fields__}

    def knobs_lock_update(self, knobs: dict[str, Any]) -> None:
        with self._lock:
            self.knobs.update(**knobs)

    # -- inside the loop --------------------------------------------------------------------
    def track_transport(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and transport not in self._transports:
            self._transports.add(transport)
            with self.stats.lock:
                self.stats.connections += 1

    def crash_in_loop(self, restart_after: float | None) -> None:
        """Crash from inside the event loop (fault or /_fake/crash); optionally come back later."""
        assert self._loop is not None
        task = self._loop.create_task(self._crash_then_restart(restart_after))
        self._tasks.append(task)
        self._crash_tasks.append(task)

    async def _crash_then_restart(self, restart_after: float | None) -> None:
        await self._down(graceful=False)
        if restart_after is not None:
            await asyncio.sleep(float(restart_after))
            with self.stats.lock:
                self.stats.restarts += 1
            await self._up()

    async def _cancel_pending_restarts(self) -> None:
        current = asyncio.current_task()
        for task in self._crash_tasks:
            if task is not current:
                task.cancel()
        self._crash_tasks = []

    async def _cancel_everything(self) -> None:
        # A pending restart_after must not bring the server back after stop().
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "FakeComfyUI is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _up(self) -> None:
        if self._runner is not None:
            return
        rt = Runtime(self.knobs, self.stats, self.dirs, self.crash_in_loop)
        rt.clean_temp()
        fault = self.knobs.fault
        if fault and fault["kind"] == "slow_start":
            self.knobs.fault = parse_fault({k: v for k, v in fault.items() if k != "ready_at"})
        runner = web.AppRunner(build_app(self, rt), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self.rt, self._runner = rt, runner
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(rt.hub.publish_forever()), loop.create_task(executor.worker(rt))]

    async def _down(self, *, graceful: bool) -> None:
        runner, rt = self._runner, self.rt
        if runner is None or rt is None:
            return
        self._runner = None
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for site in list(runner.sites):
            await site.stop()  # the port refuses connections from here on
        if graceful:
            closing = [ws.close() for ws in rt.hub.sockets.values()]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 1)
        else:
            with self.stats.lock:
                self.stats.crashes += 1
        # No close frame: clients see 1006 (ws/n_server_killed_mid_job).
        for transport in list(self._transports):
            transport.abort()
        self._transports = weakref.WeakSet()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), 2)
        self.rt = None
