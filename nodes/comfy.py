"""ComfyUI client: typed HTTP calls and /ws events for one ComfyUI server (no Django here)."""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import quote

import certifi
import httpx

from nodes.comfy_errors import (
    ComfyError,
    ComfyExecutionFailed,
    ComfyFileTooLarge,
    ComfyInterrupted,
    ComfyPartiallyRejected,
    ComfyPromptLost,
    ComfyRejected,
    ComfyTimeout,
    ComfyUnauthorized,
    ComfyUnavailable,
    rejection_from_response,
)
from nodes.comfy_events import (
    BinaryText,
    ComfyEvent,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    NodeProgress,
    OutputFile,
    Preview,
    Progress,
    ProgressState,
    Status,
    UnknownEvent,
)
from nodes.comfy_stream import EventStream, StreamClosed, belongs, open_stream
from nodes.comfy_types import (
    Device,
    History,
    Location,
    PromptResult,
    Queue,
    QueuedPrompt,
    QueueItem,
    SystemStats,
    UploadedFile,
    parse_history,
    parse_queue_item,
    parse_system_stats,
)

__all__ = [
    "BinaryText", "ComfyClient", "ComfyError", "ComfyEvent", "ComfyExecutionFailed", "ComfyFileTooLarge",
    "ComfyInterrupted", "ComfyPartiallyRejected", "ComfyPromptLost", "ComfyRejected", "ComfyTimeout",
    "ComfyUnauthorized", "ComfyUnavailable", "Device", "EventStream", "Executed", "ExecutionCached",
    "ExecutionError", "ExecutionInterrupted", "ExecutionStart", "ExecutionSuccess", "Executing", "FeatureFlags",
    "History", "Location", "NodeProgress", "OutputFile", "Preview", "Progress", "ProgressState", "PromptResult",
    "Queue", "QueueItem", "QueuedPrompt", "Status", "SystemStats", "UnknownEvent", "UploadedFile",
    "shared_client",
]  # fmt: skip

DEFAULT_IDLE_TIMEOUT = 300.0
VIEW_CHUNK_BYTES = 256 * 1024


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


# Process-wide clients kept by shared_client; beyond this many the oldest is forgotten.
SHARED_CLIENTS = 256
# Event sockets a client keeps open for the next prompts on its server (take_events), and for how long idle.
KEPT_STREAMS = 2
KEPT_STREAM_SECONDS = 30.0
_shared: dict[tuple[Any, ...], ComfyClient] = {}
_shared_lock = threading.Lock()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one (loading the CA bundle) costs ~17 ms of CPU per client."""
    return ssl.create_default_context(cafile=certifi.where())


def shared_client(base_url: str, *, timeout: float, headers: dict[str, str] | None = None) -> ComfyClient:
    """This process's client for one server, timeout and headers: successive jobs on a node reuse its
    kept-alive connections (httpx clients are thread-safe), saving a client and a TCP connect per job.

    Never close it. One left behind (the node's credentials changed, or the cache is full) is only
    forgotten, since a job may still be using it; its connections close when it is collected.
    """
    key = (os.getpid(), base_url.rstrip("/"), timeout, tuple(sorted((headers or {}).items())))
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            if len(_shared) >= SHARED_CLIENTS:
                del _shared[next(iter(_shared))]
            client = _shared[key] = ComfyClient(base_url, timeout=timeout, headers=headers)
        return client


class ComfyClient:
    """Sync client for one ComfyUI server; keeps one pooled HTTP connection set per instance."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=self.headers, verify=tls_context()
        )
        self._kept: list[tuple[float, EventStream]] = []  # (kept at, stream), newest last
        self._kept_lock = threading.Lock()

    def close(self) -> None:
        """Close pooled HTTP connections and kept event sockets."""
        self._http.close()
        for stream in self._expired(0.0):  # every kept one
            stream.close()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # HTTP plumbing

    def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        with self._stream(method, path, timeout=timeout, **kwargs) as response:
            response.read()
        return response

    @contextlib.contextmanager
    def _stream(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        """The response with its status checked and its body unread; transport failures, while it is read
        too, become ComfyUnavailable / ComfyTimeout."""
        limit = self.timeout if timeout is None else timeout
        try:
            with self._http.stream(method, path, timeout=limit, **kwargs) as response:
                status = response.status_code
                if status >= 400:
                    response.read()
                if status >= 500:
                    text = response.text[:200]
                    raise ComfyUnavailable(f"{self.base_url} answered {status} to {method} {path}: {text}")
                if status >= 400:
                    raise rejection_from_response(response, base_url=self.base_url)
                yield response
        except httpx.TimeoutException as exc:
            raise ComfyTimeout(f"{self.base_url} did not answer {method} {path} within {limit:g} s") from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise ComfyUnavailable(f"{self.base_url} unreachable ({method} {path}): {reason}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ComfyUnavailable(f"{self.base_url} sent invalid JSON for {method} {path}") from exc

    # Server state

    def system_stats(self) -> SystemStats:
        """GET /system_stats: versions, RAM and devices."""
        return parse_system_stats(self._json("GET", "/system_stats"))

    def object_info(self) -> dict[str, Any]:
        """GET /object_info: every node class (raw, about 500 KB)."""
        return self._json("GET", "/object_info")

    def object_info_for(self, class_type: str) -> dict[str, Any] | None:
        """One node class's info, or None when the server lacks it."""
        # Unknown classes give 200 {} (http/get_object_info_unknown_class.json).
        return self._json("GET", f"/object_info/{quote(class_type, safe='')}").get(class_type)

    def models(self, folder: str | None = None) -> list[str]:
        """GET /models (folder names) or /models/<folder> (file names)."""
        return self._json("GET", "/models" if folder is None else f"/models/{quote(folder, safe='')}")

    def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        """POST /free: unload models and/or drop the execution cache."""
        self._call("POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory})

    # Queue

    def queue_prompt(
        self,
        graph: dict[str, Any],
        *,
        client_id: str,
        prompt_id: str | None = None,
        extra_data: dict[str, Any] | None = None,
        front: bool = False,
    ) -> QueuedPrompt:
        """POST /prompt; raises ComfyRejected (4xx) or ComfyPartiallyRejected (200 with node_errors)."""
        body: dict[str, Any] = {"prompt": graph, "client_id": client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        if extra_data:
            body["extra_data"] = extra_data
        if front:
            body["front"] = True
        data = self._json("POST", "/prompt", json=body)
        queued = QueuedPrompt(data["prompt_id"], data.get("number", 0), data.get("node_errors") or {})
        if queued.node_errors:
            # 200 with node_errors still queued the valid outputs (http/post_prompt_validation_errors.json):
            # take them back so a half graph does not run.
            self.cancel(queued.prompt_id)
            raise ComfyPartiallyRejected(queued.prompt_id, queued.node_errors)
        return queued

    def queue(self, *, timeout: float | None = None) -> Queue:
        """GET /queue, pending items in execution order."""
        data = self._json("GET", "/queue", timeout=timeout)
        running = tuple(parse_queue_item(item) for item in data.get("queue_running", []))
        pending = tuple(parse_queue_item(item) for item in data.get("queue_pending", []))
        # queue_pending comes in heap order, not sorted (http/get_queue_with_items.json).
        return Queue(running, tuple(sorted(pending, key=lambda item: item.number)))

    def queue_remaining(self) -> int:
        """GET /prompt: running + pending prompts."""
        return self._json("GET", "/prompt")["exec_info"]["queue_remaining"]

    def delete_from_queue(self, prompt_ids: Iterable[str]) -> None:
        """Remove pending prompts (running and unknown ids are silently ignored by ComfyUI)."""
        self._call("POST", "/queue", json={"delete": list(prompt_ids)})

    def clear_queue(self) -> None:
        """Remove every pending prompt; the running one keeps running."""
        self._call("POST", "/queue", json={"clear": True})

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt: whatever runs, or only `prompt_id` if it is the running one."""
        self._call("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else None)

    def cancel(self, prompt_id: str) -> None:
        """Drop a prompt wherever it is: delete it if pending, interrupt it if running."""
        # Delete first: a prompt that starts meanwhile is then running and the targeted interrupt catches it;
        # deleting a running id and interrupting a pending one are no-ops (http/queue_ops_sequence.json).
        self.delete_from_queue([prompt_id])
        self.interrupt(prompt_id)

    # History and files

    def history(self, prompt_id: str, *, timeout: float | None = None) -> History | None:
        """GET /history/<id>; None while unknown, pending or running."""
        # 200 {} for unknown, pending and running ids alike (http/get_history_while_running.json).
        data = self._json("GET", f"/history/{quote(prompt_id, safe='')}", timeout=timeout)
        entry = data.get(prompt_id)
        return parse_history(prompt_id, entry) if entry else None

    def history_list(self, max_items: int | None = None) -> list[History]:
        """GET /history: the newest `max_items` entries, oldest first."""
        params = {} if max_items is None else {"max_items": max_items}
        data = self._json("GET", "/history", params=params)
        return [parse_history(prompt_id, entry) for prompt_id, entry in data.items()]

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        """POST /history delete (unknown ids are fine)."""
        self._call("POST", "/history", json={"delete": list(prompt_ids)})

    def clear_history(self) -> None:
        """POST /history clear."""
        self._call("POST", "/history", json={"clear": True})

    def view(self, filename: str, *, subfolder: str = "", kind: str = "output") -> bytes:
        """GET /view: one file's bytes (`kind` is ComfyUI's `type`: output, temp or input)."""
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        return self._call("GET", "/view", params=params).content

    def view_into(
        self, sink: Sink, filename: str, *, subfolder: str = "", kind: str = "output", limit: int | None = None
    ) -> int:
        """GET /view written into `sink` as it arrives (memory stays bounded whatever the file's size); the
        bytes written. Raises ComfyFileTooLarge once more than `limit` bytes came."""
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        written = 0
        with self._stream("GET", "/view", params=params) as response:
            for chunk in response.iter_bytes(VIEW_CHUNK_BYTES):
                written += len(chunk)
                if limit is not None and written > limit:
                    raise ComfyFileTooLarge(f"{self.base_url} sent more than {limit} bytes of {filename}")
                sink.write(chunk)
        return written

    def upload_image(
        self, data: bytes, *, filename: str, subfolder: str = "", overwrite: bool = False, kind: str = "input"
    ) -> UploadedFile:
        """POST /upload/image; the stored name may differ (` (1)` suffix when the name is taken)."""
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        form = {"overwrite": "true" if overwrite else "false", "subfolder": subfolder, "type": kind}
        files = {"image": (filename, data, content_type)}
        body = self._json("POST", "/upload/image", data=form, files=files)
        return UploadedFile(body["name"], body.get("subfolder", ""), body.get("type", kind))

    # Events

    def open_events(
        self, client_id: str, *, preview_metadata: bool = False, idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    ) -> EventStream:
        """Open /ws under `client_id`; do it before posting, ComfyUI only routes job events to that socket."""
        return open_stream(
            self.base_url,
            client_id,
            headers=self.headers,
            open_timeout=self.timeout,
            idle_timeout=idle_timeout,
            preview_metadata=preview_metadata,
        )

    def take_events(self, client_id: str, *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> EventStream:
        """An event socket for the next prompt: one that an ended prompt left open (keep_events), else a new
        one under `client_id`. Post the prompt under the stream's client_id: ComfyUI routes its events there.

        A kept socket spares the node and us a WebSocket handshake and its close per prompt (about 1 ms of
        CPU between them). One that the node closed meanwhile (a restart) is noticed here and replaced.
        """
        while True:
            with self._kept_lock:
                if not self._kept:
                    break
                kept_at, stream = self._kept.pop()
            if time.monotonic() - kept_at < KEPT_STREAM_SECONDS and stream.still_open():
                stream.idle, stream.idle_timeout = False, idle_timeout
                return stream
            stream.close()
        return self.open_events(client_id, idle_timeout=idle_timeout)

    def keep_events(self, stream: EventStream) -> None:
        """Give back a stream from take_events: kept for the next prompt if the last one ended on it
        (`stream.idle`), else closed."""
        stale = self._expired(KEPT_STREAM_SECONDS)
        if stream.idle:
            with self._kept_lock:
                self._kept.append((time.monotonic(), stream))
                if len(self._kept) > KEPT_STREAMS:
                    stale.append(self._kept.pop(0)[1])
        else:
            stale.append(stream)
        for old in stale:
            old.close()

    def _expired(self, age: float) -> list[EventStream]:
        """Takes the kept streams idle for `age` s or more out of the pool."""
        now = time.monotonic()
        with self._kept_lock:
            expired = [stream for kept_at, stream in self._kept if now - kept_at >= age]
            self._kept = [(kept_at, stream) for kept_at, stream in self._kept if now - kept_at < age]
        return expired

    def events(
        self, client_id: str, *, preview_metadata: bool = False, idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    ) -> Iterator[ComfyEvent]:
        """Typed /ws events until the socket closes (opens lazily: to post afterwards use open_events)."""
        with self.open_events(client_id, preview_metadata=preview_metadata, idle_timeout=idle_timeout) as stream:
            yield from stream

    # Following one prompt

    def locate(self, prompt_id: str, *, timeout: float | None = None) -> Location:
        """Where the server has this prompt: running, pending, finished (history) or unknown (lost)."""
        # /queue before /history: a prompt ending between the two calls is then found in history.
        queue = self.queue(timeout=timeout)
        for state, items in (("running", queue.running), ("pending", queue.pending)):
            for item in items:
                if item.prompt_id == prompt_id:
                    return Location(state, item=item)
        entry = self.history(prompt_id, timeout=timeout)
        # After a restart queue and history are empty (http/o_history_after_restart.json).
        return Location("finished", history=entry) if entry else Location("unknown")

    def follow(self, stream: EventStream, prompt_id: str, *, timeout: float | None = None) -> Iterator[ComfyEvent]:
        """Yield one prompt's events until `executing` null; raise on error, interrupt, crash or silence."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._next_event(stream, prompt_id, deadline)
            if event is None:
                return
            yield event
            if isinstance(event, ExecutionError):
                raise ComfyExecutionFailed(event)
            if isinstance(event, ExecutionInterrupted):
                raise ComfyInterrupted(event)
            # `executing` node null ends the prompt, after execution_success (ws/a_success.submitter.jsonl).
            if isinstance(event, Executing) and event.node is None:
                return

    def _next_event(self, stream: EventStream, prompt_id: str, deadline: float | None) -> ComfyEvent | None:
        """The next event of this prompt, or None if history shows it ended unseen."""
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise ComfyTimeout(f"prompt {prompt_id} did not finish on {self.base_url} in time")
            wait = quiet_since + stream.idle_timeout - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            try:
                event = stream.recv(max(wait, 0.0))
            except StreamClosed as exc:
                raise ComfyUnavailable(
                    f"{self.base_url} closed the event socket while prompt {prompt_id} ran"
                ) from exc
            except ComfyTimeout:
                if time.monotonic() - quiet_since < stream.idle_timeout:
                    continue
                if self._still_waiting(prompt_id, stream.idle_timeout):
                    quiet_since = time.monotonic()
                    continue
                return None
            except ComfyUnavailable as exc:
                raise ComfyUnavailable(f"{exc} while prompt {prompt_id} was running") from exc
            if belongs(event, prompt_id):
                return event

    def _still_waiting(self, prompt_id: str, idle: float) -> bool:
        """After `idle` s of silence: True if the prompt is pending, False if finished; else raise."""
        try:
            where = self.locate(prompt_id, timeout=min(self.timeout, max(idle, 1.0)))
        except ComfyUnavailable as exc:
            raise ComfyTimeout(
                f"no event from {self.base_url} for {idle:g} s while prompt {prompt_id} was running ({exc})"
            ) from exc
        if where.state == "running":
            raise ComfyTimeout(
                f"no event from {self.base_url} for {idle:g} s while prompt {prompt_id} was running"
            )
        if where.state == "unknown":
            raise ComfyPromptLost(f"{self.base_url} no longer knows prompt {prompt_id} (restarted?)")
        # Finished without us seeing it: e.g. a second socket with our clientId muted this one
        # (ws/h2_reconnect_gotcha.new_socket.jsonl).
        return where.state == "pending"

    def wait(
        self,
        stream: EventStream,
        prompt_id: str,
        *,
        on_event: Callable[[ComfyEvent], None] | None = None,
        timeout: float | None = None,
    ) -> PromptResult:
        """Follow a prompt to its end, then return its outputs: from the socket's `executed` events when it
        showed the whole run (cached output nodes replay theirs, ws/b_cached), else from /history."""
        started = succeeded = False
        outputs: list[OutputFile] = []
        for event in self.follow(stream, prompt_id, timeout=timeout):
            if isinstance(event, ExecutionStart):
                started = True
            elif isinstance(event, Executed):
                outputs.extend(event.files)
            elif isinstance(event, ExecutionSuccess):
                succeeded = True
            if on_event is not None:
                on_event(event)
        if started and succeeded:
            stream.idle = True  # it saw the prompt through, to `executing` null: it may follow another
            return PromptResult(prompt_id, tuple(outputs))
        # A socket opened mid-run misses the earlier `executed` outputs (ws/h_reconnect.new_socket.jsonl).
        return self._result(prompt_id)

    def run_prompt(
        self,
        graph: dict[str, Any],
        *,
        client_id: str | None = None,
        prompt_id: str | None = None,
        extra_data: dict[str, Any] | None = None,
        on_event: Callable[[ComfyEvent], None] | None = None,
        preview_metadata: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        timeout: float | None = None,
    ) -> PromptResult:
        """Open /ws, post the graph, follow it to the end and return its outputs."""
        client_id = client_id or uuid.uuid4().hex
        with self.open_events(client_id, preview_metadata=preview_metadata, idle_timeout=idle_timeout) as stream:
            queued = self.queue_prompt(graph, client_id=client_id, prompt_id=prompt_id, extra_data=extra_data)
            return self.wait(stream, queued.prompt_id, on_event=on_event, timeout=timeout)

    def reattach(
        self,
        prompt_id: str,
        *,
        client_id: str | None = None,
        on_event: Callable[[ComfyEvent], None] | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        timeout: float | None = None,
    ) -> PromptResult:
        """Finish following a prompt posted earlier (e.g. by a worker that died) without posting it again."""
        if client_id is None:
            client_id = self._client_id_of(prompt_id)
        with self.open_events(client_id, idle_timeout=idle_timeout) as stream:
            # Socket first, then look: an end between the two is then either in history or on the socket.
            where = self.locate(prompt_id)
            if where.state == "unknown":
                raise ComfyPromptLost(f"{self.base_url} no longer knows prompt {prompt_id} (restarted?)")
            if where.state == "finished":
                return self._result(prompt_id)
            return self.wait(stream, prompt_id, on_event=on_event, timeout=timeout)

    def _client_id_of(self, prompt_id: str) -> str:
        where = self.locate(prompt_id)
        if where.item is not None and where.item.client_id:
            return where.item.client_id
        return uuid.uuid4().hex

    def _result(self, prompt_id: str) -> PromptResult:
        entry = None
        # History is written before execution_success (timing/history_race_check.jsonl); retry briefly anyway.
        for delay in (0.0, 0.05, 0.1, 0.2, 0.4):
            time.sleep(delay)
            entry = self.history(prompt_id)
            if entry is not None:
                break
        if entry is None:
            raise ComfyPromptLost(f"{self.base_url} finished prompt {prompt_id} but has no history for it")
        if isinstance(entry.failure, ExecutionError):
            raise ComfyExecutionFailed(entry.failure)
        if isinstance(entry.failure, ExecutionInterrupted):
            raise ComfyInterrupted(entry.failure)
        return PromptResult(prompt_id, entry.outputs, entry)
