"""Run one assigned job on its node: submit or re-attach, follow events, store outputs."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from concurrent import futures
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from generations import cache, files, outputs, progress, services
from generations.models import Job
from nodes import comfy
from nodes.comfy import ComfyClient
from nodes.dispatch import NodeView, graph_models
from workflows_app.params import WorkflowError
from workflows_app.render import merge_cache_nodes
from workflows_app.services import cache_graphs

log = logging.getLogger(__name__)

# A job's start and progress are written to its row at most this late; the channel layer gets each at once.
LIVE_WRITE_SECONDS = 0.5
# The newest preview (for GET /preview and late joiners) is stored at most this often; viewers get each one.
PREVIEW_STORE_SECONDS = 0.1


# As many heartbeat threads as this process runs jobs at once (each beats until its job ends). The bound only
# guards against a runaway: a job whose heartbeat waited for a thread would lose its lease.
MAX_HEARTBEAT_THREADS = 1024
_heartbeats: tuple[int, futures.ThreadPoolExecutor] | None = None
_heartbeats_lock = threading.Lock()


def heartbeat_threads() -> futures.ThreadPoolExecutor:
    """This process's heartbeat threads. They outlive a job, and so does each one's database connection: a
    thread per job opened a connection per job longer than LIVE_WRITE_SECONDS (on PostgreSQL, a login and a
    server process each)."""
    global _heartbeats
    with _heartbeats_lock:
        if _heartbeats is None or _heartbeats[0] != os.getpid():  # a forked child starts its own
            _heartbeats = os.getpid(), futures.ThreadPoolExecutor(MAX_HEARTBEAT_THREADS, "heartbeat")
        return _heartbeats[1]


class CancelledBeforeStart(Exception):
    """Cancel was requested while the prompt was being submitted."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def execute(job_id: Any, *, handed_over: str = "") -> None:
    """Execute an assigned job, or re-attach to its prompt if a dead worker had posted it.

    `handed_over`: the lease its claim granted (the claim's message carries it); none from the reaper.
    """
    me = worker_id()
    leased = services.job_lease(job_id=job_id, worker=me, handed_over=handed_over)
    if leased is None:
        return
    job, posted = leased
    if job.cancel_requested:
        if posted:  # a dead executor may have posted it: it must not keep the GPU busy
            cancel_on_node(job)
        services.job_cancelled(job=job)
        return
    JobRun(job, posted=posted, worker=me).run()


def cancel_on_node(job: Job) -> None:
    """Drop the job's prompt from its node, whether it runs or still waits in the node's queue."""
    try:
        with ComfyClient(job.node.base_url, timeout=5, headers=job.node.request_headers()) as client:
            client.cancel(job.prompt_id)  # targeted: other jobs on the node keep running
    except comfy.ComfyError:
        log.warning("job %s: cancelling prompt %s on %s failed", job.id, job.prompt_id, job.node, exc_info=True)


class JobRun:
    def __init__(self, job: Job, *, posted: bool, worker: str) -> None:
        self.job = job  # as job_lease gives it: with its node
        self.posted = posted  # an earlier executor may have posted the prompt: re-attach to it first
        self.worker = worker  # the lease's name from the first heartbeat on
        self.node = job.node
        self.client = comfy.shared_client(
            self.node.base_url, timeout=settings.COMFYROUTER_COMFY_TIMEOUT, headers=self.node.request_headers()
        )
        self.stop = threading.Event()
        self.cancelled = threading.Event()
        self.lease_lost = threading.Event()
        self.stream: comfy.EventStream | None = None
        self.titles = {nid: (n.get("_meta") or {}).get("title", "") for nid, n in job.prompt.items()}
        self.written = self._live()  # a job shorter than LIVE_WRITE_SECONDS writes no live row: its end does
        self.preview_seq = 0
        self.preview_stored = -PREVIEW_STORE_SECONDS  # monotonic time; the first preview is stored at once

    def run(self) -> None:
        beat = heartbeat_threads().submit(self._heartbeat)
        try:
            self._run()
        finally:
            self.stop.set()
            beaten, _ = futures.wait([beat], timeout=5)
            if self.stream is not None:
                # Kept for the node's next prompt if this one ended on it, unless the heartbeat closed it (or,
                # still running, could).
                if not beaten or self.cancelled.is_set() or self.lease_lost.is_set():
                    self.stream.idle = False
                self.client.keep_events(self.stream)

    def _run(self) -> None:
        job = self.job
        try:
            result = self._result()
            files = outputs.fetch_outputs(job=job, client=self.client, files=result.outputs, titles=self.titles)
            services.job_succeed(job=job, outputs=files)
        except CancelledBeforeStart:
            services.job_cancelled(job=job)
        except comfy.ComfyInterrupted as exc:
            self._ended_early(f"ComfyUI interrupted the prompt at node {exc.event.node_id}.")
        except comfy.ComfyExecutionFailed as exc:
            services.job_fail(job=job, error=str(exc), error_node=str(exc.event.node_id or ""))
        except comfy.ComfyUnauthorized as exc:
            self._node_lost(str(exc))
        except comfy.ComfyRejected as exc:
            services.job_fail(job=job, error=str(exc), error_node=",".join(exc.node_errors or {}))
        except comfy.ComfyFileTooLarge as exc:  # any node would make the same file
            advice = "raise COMFYROUTER_MAX_OUTPUT_BYTES to keep files this big"
            services.job_fail(job=job, error=f"Output too large to keep ({exc}); {advice}.")
        except comfy.ComfyError as exc:
            self._node_lost(str(exc))

    def _result(self) -> comfy.PromptResult:
        job = self.job
        if self.posted:
            try:
                # Not job.client_id: the prompt may have been posted under a kept socket's (take_events).
                return self.client.reattach(
                    job.prompt_id, on_event=self.on_event,
                    idle_timeout=settings.COMFYROUTER_IDLE_TIMEOUT, timeout=settings.COMFYROUTER_JOB_TIMEOUT,
                )  # fmt: skip
            except comfy.ComfyPromptLost:
                log.info("job %s: prompt %s unknown to %s, submitting it", job.id, job.prompt_id, self.node)
                services.job_resubmitting(job=job)
        return self._submit()

    def _submit(self) -> comfy.PromptResult:
        job = self.job
        # The lease gave the job its prompt id, stored before this POST, and a client id for a new socket.
        prompt_id = job.prompt_id
        # Given back by run() once the job's end is written: kept for the node's next prompt, or closed.
        idle_timeout = settings.COMFYROUTER_IDLE_TIMEOUT
        self.stream = stream = self.client.take_events(job.client_id, idle_timeout=idle_timeout)
        self._upload_inputs()
        if self.cancelled.is_set():
            raise CancelledBeforeStart
        self.client.queue_prompt(self._prompt(), client_id=stream.client_id, prompt_id=prompt_id)
        if self.cancelled.is_set():
            # The heartbeat's interrupt may have reached the node before our POST did.
            self.client.cancel(prompt_id)
            raise CancelledBeforeStart
        timeout = settings.COMFYROUTER_JOB_TIMEOUT
        return self.client.wait(stream, prompt_id, on_event=self.on_event, timeout=timeout)

    def _prompt(self) -> dict[str, Any]:
        """The job's prompt plus the `[!cache]` nodes this node can load, so ComfyUI keeps them warm."""
        # ComfyUI drops cached results of nodes absent from the prompt it runs: keeping them in
        # every prompt is what keeps a loaded model in memory across different workflows.
        node = NodeView.from_node(self.node)
        graphs = [g for g in cache_graphs() if not node.lacks(graph_models(g))]
        try:
            return merge_cache_nodes(self.job.prompt, graphs)
        except WorkflowError:
            log.warning("job %s: [!cache] nodes could not be merged; sending the prompt alone", self.job.id)
            return self.job.prompt

    def _upload_inputs(self) -> None:
        """Send the input files the node lacks, named by content hash (ComfyUI keeps one copy of same bytes)."""
        entries = list(self.job.input_files.all()) if self.job.has_input_files else []
        held = files.files_on_node(self.node, self.client) if entries else set()
        for entry in entries:
            name = files.node_filename(entry)
            if name in held:
                continue
            with entry.file.open("rb") as fh:
                self.client.upload_image(fh.read(), filename=name)
            cache.node_files_add(self.node, [name])

    def on_event(self, event: comfy.ComfyEvent) -> None:
        job = self.job
        if isinstance(event, comfy.ExecutionStart | comfy.Executing) and job.state == Job.State.ASSIGNED:
            services.job_started(job=job)
        if isinstance(event, comfy.Executing) and event.node:
            self._progress(job.progress_value, job.progress_max, event.node)
        elif isinstance(event, comfy.Progress):
            self._progress(int(event.value), int(event.max), event.node or job.current_node)
        elif isinstance(event, comfy.Preview):
            self.preview_seq += 1
            if (now := time.monotonic()) - self.preview_stored >= PREVIEW_STORE_SECONDS:
                self.preview_stored = now
                progress.store_preview(job.id, event.image)
            message = {
                "type": "job.preview",
                "job_id": str(job.id),
                "seq": self.preview_seq,
                "image": event.image,
            }
            progress.publish(progress.job_group(job.id), message)

    def _progress(self, value: int, maximum: int, node: str) -> None:
        job = self.job
        job.progress_value, job.progress_max, job.current_node = value, maximum, node
        message = {"type": "job.progress", "job_id": str(job.id), "value": value, "max": maximum,
                   "node": node, "node_title": self.titles.get(node, "")}  # fmt: skip
        progress.publish(progress.job_group(job.id), message)

    def _live(self) -> tuple[Any, ...]:
        job = self.job
        return job.state, job.progress_value, job.progress_max, job.current_node

    def _heartbeat(self) -> None:
        """Write the job's start and progress when they change, keep the lease fresh and turn a cancel request
        into a targeted interrupt: off the thread that reads events, which never waits for the database."""
        close_old_connections()  # the thread's connection from its last job: kept if healthy and young
        try:
            self._beat()
        except Exception:
            log.exception(
                "job %s: heartbeat failed; the reaper takes the job if its lease goes stale", self.job.id
            )

    def _beat(self) -> None:
        beat_due = time.monotonic() + settings.COMFYROUTER_HEARTBEAT_INTERVAL
        while not self.stop.wait(LIVE_WRITE_SECONDS):
            if (live := self._live()) != self.written:
                self.written = live
                services.job_write_live(job=self.job)
            if time.monotonic() < beat_due:
                continue
            beat_due = time.monotonic() + settings.COMFYROUTER_HEARTBEAT_INTERVAL
            alive = services.job_heartbeat(job=self.job, worker=self.worker)
            requested = Job.objects.filter(id=self.job.id, cancel_requested=True).exists()
            if requested and not self.cancelled.is_set():
                self.cancelled.set()
                self._interrupt()
            elif not alive:
                log.warning("job %s: lease lost (ended or taken over); stopping", self.job.id)
                self.lease_lost.set()
                self._close_stream()
                return

    def _interrupt(self) -> None:
        if not self.job.prompt_id:
            return  # not submitted yet: _submit sees the cancel; an untargeted interrupt would hit another job
        cancel_on_node(self.job)
        self._close_stream()

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def _ended_early(self, reason: str) -> None:
        if self.lease_lost.is_set():
            return  # the job ended elsewhere or another executor follows it now: not ours to write
        if self.cancelled.is_set() or Job.objects.filter(id=self.job.id, cancel_requested=True).exists():
            services.job_cancelled(job=self.job)
        else:
            services.job_fail(job=self.job, error=reason)

    def _node_lost(self, cause: str) -> None:
        if self.cancelled.is_set() or self.lease_lost.is_set():
            self._ended_early(cause)
            return
        from nodes.services import node_mark_lost

        node_mark_lost(node=self.node, error=cause)
        cache.node_files_forget(self.node)  # a node that comes back may have lost its input files
        services.job_requeue(job=self.job, cause=cause)
