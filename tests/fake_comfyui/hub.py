"""WebSocket table and the ordered publisher, shaped like ComfyUI's PromptServer.sockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

Message = tuple[str | None, str | bytes]  # (sid or None for everyone, payload)


class Hub:
    """One socket per clientId; a single publisher task keeps every frame in emit order."""

    def __init__(self, features: dict[str, Any]) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.flags: dict[str, dict[str, Any]] = {}
        self.features = features
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.running_client_id: str | None = None
        self.last_node_id: str | None = None

    def emit(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """Queue a JSON message for `sid`, or for every socket when sid is None."""
        self.outbox.put_nowait((sid, json.dumps({"type": event, "data": data})))

    def emit_binary(self, frame: bytes, sid: str | None) -> None:
        self.outbox.put_nowait((sid, frame))

    def wants_metadata(self, sid: str | None) -> bool:
        return bool(sid and self.flags.get(sid, {}).get("supports_preview_metadata"))

    async def publish_forever(self) -> None:
        while True:
            sid, payload = await self.outbox.get()
            targets = (
                list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
            )
            for ws in targets:
                await _send(ws, payload)

    async def handle(self, request: web.Request, status: Callable[[], dict[str, Any]]) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            # Same clientId replaces the old socket, which then goes silent (ws/h_reconnect).
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex  # ws/i_feature_flags_no_clientId: 32 hex chars
        self.sockets[sid] = ws
        self.flags[sid] = {}
        try:
            self.emit("status", {"status": status(), "sid": sid}, sid)
            if self.running_client_id == sid and self.last_node_id is not None:
                # Reconnect mid-run gets the current node without prompt_id (ws/h_reconnect.new_socket).
                self.emit("executing", {"node": self.last_node_id}, sid)
            await self._read(ws, sid)
        finally:
            # Any socket closing unregisters its clientId, even if a newer one took it over
            # (ws/h2_reconnect_gotcha): the newer socket stays open but hears nothing.
            self.sockets.pop(sid, None)
            self.flags.pop(sid, None)
        return ws

    async def _read(self, ws: web.WebSocketResponse, sid: str) -> None:
        first = True
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError:
                continue
            # Only a first feature_flags message gets a reply (ws/i_feature_flags_no_clientId).
            if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                self.flags[sid] = data.get("data") or {}
                self.emit("feature_flags", dict(self.features), sid)
            first = False


async def _send(ws: web.WebSocketResponse, payload: str | bytes) -> None:
    try:
        if isinstance(payload, bytes):
            await ws.send_bytes(payload)
        else:
            await ws.send_str(payload)
    except (ConnectionError, RuntimeError):
        pass
