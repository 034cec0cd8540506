"""The /ws side of the ComfyUI client: one socket per clientId, yielding typed events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

from websockets.exceptions import InvalidStatus, WebSocketException

from nodes.comfy_errors import ComfyError, ComfyRejected, ComfyTimeout, ComfyUnauthorized, ComfyUnavailable
from nodes.comfy_events import (
    BinaryText,
    ComfyEvent,
    FeatureFlags,
    Preview,
    Status,
    UnknownEvent,
    decode_binary,
    decode_text,
)
from nodes.comfy_socket import NodeSocket, SocketClosed

MAX_FRAME_BYTES = 64 * 1024 * 1024


class EventStream:
    """One /ws connection registered under a clientId; iterating yields typed events."""

    def __init__(self, ws: NodeSocket, *, base_url: str, client_id: str, idle_timeout: float) -> None:
        self._ws = ws
        self.base_url = base_url
        self.client_id = client_id  # ComfyUI sends a prompt's events here if it is posted under this id
        self.idle_timeout = idle_timeout
        # Set by ComfyClient.wait once the prompt it followed ended on this socket, every event seen: nothing
        # more of it comes, and the socket may follow the next prompt posted under its client_id.
        self.idle = False

    def recv(self, timeout: float | None = None) -> ComfyEvent:
        """Next event; ComfyTimeout after `timeout` (default idle_timeout) s of silence."""
        wait = self.idle_timeout if timeout is None else timeout
        try:
            frame = self._ws.recv(timeout=wait)
        except TimeoutError as exc:
            raise ComfyTimeout(f"no event from {self.base_url} for {wait:g} s") from exc
        except SocketClosed as exc:
            if exc.clean:
                raise StreamClosed(f"{self.base_url} closed the event socket") from exc
            # A killed server ends the socket without a close frame, code 1006
            # (ws/n_server_killed_mid_job.submitter.jsonl).
            raise ComfyUnavailable(f"event socket to {self.base_url} dropped: {exc}") from exc
        return decode_binary(frame) if isinstance(frame, bytes) else decode_text(frame)

    def __iter__(self) -> Iterator[ComfyEvent]:
        while True:
            try:
                yield self.recv()
            except StreamClosed:
                return

    def close(self) -> None:
        """Close the socket (ComfyUI then forgets this clientId)."""
        self._ws.close()

    def still_open(self) -> bool:
        """For a stream that sat idle: whether its socket is still open (what arrived meanwhile is dropped)."""
        return self._ws.discard_pending()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class StreamClosed(ComfyUnavailable):
    """The server closed the socket with a close frame."""


def open_stream(
    base_url: str,
    client_id: str,
    *,
    headers: dict[str, str],
    open_timeout: float,
    idle_timeout: float,
    preview_metadata: bool = False,
) -> EventStream:
    """Connect to <base_url>/ws?clientId=<client_id> with `headers` on the handshake."""
    scheme, rest = base_url.split("://", 1)
    url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={quote(client_id, safe='')}"
    try:
        ws = NodeSocket.connect(url, headers=headers, timeout=open_timeout, max_size=MAX_FRAME_BYTES)
    except InvalidStatus as exc:
        raise _handshake_error(base_url, exc.response.status_code) from exc
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise ComfyUnavailable(f"cannot open {base_url}/ws: {exc}") from exc
    if preview_metadata:
        # Type-4 previews (with prompt_id) need this first (ws/m_ksampler_type4.submitter.jsonl).
        try:
            ws.send_text(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        except (OSError, SocketClosed) as exc:
            ws.close()
            raise ComfyUnavailable(f"event socket to {base_url} dropped: {exc}") from exc
    return EventStream(ws, base_url=base_url, client_id=client_id, idle_timeout=idle_timeout)


def belongs(event: ComfyEvent, prompt_id: str) -> bool:
    """Whether an event is part of this prompt's run on a socket opened for it."""
    if isinstance(event, Status | FeatureFlags | BinaryText | UnknownEvent):
        # Status is queue-wide; binary TEXT goes to every socket (ws/g_binary_text_frame.observer.jsonl).
        return False
    # The reconnect `executing` has no prompt_id (ws/h_reconnect.new_socket.jsonl); type-1 previews have
    # none either but only go to the job's own socket (ws/m_ksampler_cold.observer.jsonl).
    if isinstance(event, Preview):
        return event.prompt_id in (None, prompt_id)
    return getattr(event, "prompt_id", None) == prompt_id


def _handshake_error(base_url: str, status: int) -> ComfyError:
    if status in (401, 403):
        return ComfyUnauthorized(f"{base_url} refused the /ws handshake with {status}: missing or wrong token")
    if status >= 500:
        return ComfyUnavailable(f"{base_url} refused the /ws handshake with {status}")
    return ComfyRejected(f"{base_url} refused the /ws handshake with {status}", status_code=status)
