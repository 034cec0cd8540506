"""A websockets client that records every frame and lets a test wait for one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import websockets

Frame = str | bytes


def is_text(frame: Frame, kind: str, **fields: Any) -> bool:
    if isinstance(frame, bytes):
        return False
    msg = json.loads(frame)
    return msg["type"] == kind and all(msg["data"].get(k) == v for k, v in fields.items())


class Recorder:
    """Reads one socket in the background into `frames`."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self.closed_with: BaseException | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> Recorder:
        return cls(await websockets.connect(url, max_size=None))

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.frames.append(frame)
                self._changed.set()
        except websockets.ConnectionClosed as ex:
            self.closed_with = ex
        self._changed.set()

    async def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = 10) -> Frame:
        """Wait until a frame matching `predicate` has arrived (checking old frames too)."""
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for frame in self.frames[seen:]:
                    if predicate(frame):
                        return frame
                seen = len(self.frames)
                if self._task.done():
                    raise AssertionError("socket ended before the expected frame")
                self._changed.clear()
                await self._changed.wait()

    async def send_json(self, value: Any) -> None:
        await self.ws.send(json.dumps(value))

    async def quiet(self, seconds: float = 0.15) -> None:
        """Wait until no frame arrived for `seconds`."""
        while True:
            count = len(self.frames)
            await asyncio.sleep(seconds)
            if len(self.frames) == count:
                return

    async def close(self) -> None:
        await self.ws.close()
        await self._task
