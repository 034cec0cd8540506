"""Job lifecycle: every write with a rule or a side effect goes through here."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from comfyrouter.prepared import Prepared, PreparedUpdate
from generations import progress
from generations.models import CachedFile, Job, JobOutput
from generations.outputs import discard_outputs, record_outputs
from nodes.dispatch import (
    NodeView,
    claim_jobs,
    claim_new_job,
    missing_models,
    model_files,
    primary_checkpoint,
    release_slot,
)
from nodes.models import Node

log = logging.getLogger(__name__)

IN_FLIGHT = (Job.State.ASSIGNED, Job.State.RUNNING)

# The reads every job makes, compiled once (comfyrouter.prepared).
# The executor's first: the job with its node (node_inventory reads the node's health only when it changed).
HANDED_OVER = Prepared(
    lambda id, worker: Job.objects.select_related("node").defer("node__health")
    .filter(id=id, worker=worker, state__in=IN_FLIGHT, node__isnull=False)
)  # fmt: skip
# The nodes a new job's models are checked against, and its claim plans with. Unordered: the scheduler ranks.
ENABLED_NODES = Prepared(lambda: Node.objects.filter(enabled=True).defer("health").order_by())
ANY_QUEUED = Prepared(lambda: Job.objects.queued().order_by().values_list("pk", flat=True)[:1])
QUEUED = Prepared(lambda: Job.objects.queued().order_by().values_list("pk", flat=True))  # for its count()
JOB_STATE = Prepared(lambda id: Job.objects.filter(id=id).values_list("state", flat=True))


class JobError(Exception):
    """A job request the router cannot accept."""


class QueueFull(JobError):
    def __init__(self, pending: int, retry_after: int) -> None:
        super().__init__(
            f"The queue is full ({pending} jobs waiting, limit {settings.COMFYROUTER_PENDING_LIMIT}); "
            f"retry in {retry_after} s."
        )
        self.retry_after = retry_after


def enqueue_dispatch(
    *, queued: bool = False, node_id: int | None = None, nodes: list[Node] | None = None
) -> list[tuple[Job, Node]]:
    """Fill free node slots: claimed inside the caller's transaction, handed to workers once it commits.

    Claiming in the transaction that freed a slot or queued a job saves a write transaction (SQLite's one
    writer lock) per job over claiming after the commit. Outside a transaction this is dispatch_now().
    Returns the (job, node) pairs claimed. `queued`: the caller knows a job is queued (it just queued one).
    `node_id`: fill only that node (the caller freed its slot and holds its row). `nodes`: the nodes as the
    caller's transaction read them.
    """
    if not transaction.get_connection().in_atomic_block:
        # robust: with the database or Redis failing, the caller's write stands; the sweep dispatches later.
        transaction.on_commit(dispatch_now, robust=True)  # runs at once in autocommit
        return []
    if not queued and not ANY_QUEUED.all():
        return []
    try:
        with transaction.atomic():  # a savepoint: a failed claim leaves the caller's writes alone
            pairs = claim_jobs(node_id=node_id, nodes=nodes)
    except DatabaseError:
        # The job is still accepted, or still finished: beat's sweep dispatches what is queued.
        log.warning("claiming queued jobs failed; the sweep will dispatch them", exc_info=True)
        return []
    if pairs:
        transaction.on_commit(lambda: _hand_over(pairs), robust=True)
    return pairs


def dispatch_now(*, node_id: int | None = None) -> list[tuple[Job, Node]]:
    """Claim queued jobs for free node slots (of node `node_id` only, if given), here and now, and hand
    each to a worker to execute.

    Claiming is atomic (row locks, conditional slot updates), so the web, workers and the sweep may
    all call this at once; a job is never claimed twice. Running it in the caller saves a Celery hop
    per job over a dispatch task.
    """
    # A read first: most calls (each sweep) find the queue empty, and need no write lock.
    if not ANY_QUEUED.all():
        return []
    pairs = claim_jobs(node_id=node_id, wait_for_locked=True)  # its own transaction
    _hand_over(pairs)
    return pairs


_keeping = threading.local()


@contextlib.contextmanager
def keeping_a_job() -> Iterator[list[tuple[str, str]]]:
    """Of the jobs this thread hands over inside the block, keep the first for the caller to execute next.

    Yields a list that receives (job id, lease) of the kept job; the others go to workers as usual. An
    executor whose job's end refilled the freed slot runs the new job itself: no broker round trip between
    a node's jobs. Should the caller die before running it, the reaper hands it over like a lost message.
    """
    from generations.tasks import execute_job

    kept: list[tuple[str, str]] = []
    _keeping.jobs = kept
    try:
        yield kept
    except BaseException:
        for job_id, lease in kept:  # the caller cannot run it: a worker will (the reaper, if Redis is down)
            with contextlib.suppress(Exception):
                execute_job.delay(job_id, lease)
        raise
    finally:
        _keeping.jobs = None


def _hand_over(pairs: list[tuple[Job, Node]]) -> None:
    """Send each claimed job to a worker to execute (or keep one, see keeping_a_job); tell viewers."""
    from generations.tasks import execute_job

    kept = getattr(_keeping, "jobs", None)
    for job, _node in pairs:
        if kept is not None and not kept:
            kept.append((str(job.id), job.worker))
        else:
            execute_job.delay(str(job.id), job.worker)  # the lease the claim granted
        job_announce(job=job)


def node_ready_dispatch(sender: Any, node: Node, **kwargs: Any) -> None:
    """nodes.signals.node_ready: fill the slots of a node that can take jobs again. Only its own: nodes
    resumed together then claim disjoint jobs instead of contending for each other's slots."""
    dispatch_now(node_id=node.id)


def job_create(
    *,
    prompt: dict[str, Any],
    owner=None,
    api_key=None,
    endpoint=None,
    inputs: dict[str, Any] | None = None,
    files: Iterable[CachedFile] = (),
    source: str = Job.Source.ENDPOINT,
    priority: int = 0,
    webhook_url: str = "",
    idempotency_key: str = "",
) -> Job:
    """Queue a rendered prompt; the same idempotency key from the same owner returns the first job."""
    if idempotency_key and (existing := _idempotent_job(owner, idempotency_key)):
        return existing
    files = list(files)
    try:
        with transaction.atomic():
            pending = QUEUED.count()
            if pending >= settings.COMFYROUTER_PENDING_LIMIT:
                raise QueueFull(pending, retry_after=settings.COMFYROUTER_RETRY_AFTER)
            nodes = ENABLED_NODES.all()  # read once: for the models (node_inventory), then for the claim
            unrunnable = _unrunnable(prompt, nodes)
            job = Job(
                prompt=prompt, model_files=model_files(prompt), inputs=inputs or {}, owner=owner, api_key=api_key,
                endpoint=endpoint, source=source, priority=priority, webhook_url=webhook_url,
                idempotency_key=idempotency_key, has_input_files=bool(files),
            )  # fmt: skip
            # With nothing else queued, nothing is ahead of this job: it takes a free slot as it is inserted.
            node = None if unrunnable or pending else _claim_new(job, nodes)
            job.save(force_insert=True)
            if files:
                job.input_files.set(files)
            if unrunnable:
                _finish(job, Job.State.FAILED, error=unrunnable)
            elif node is not None:
                transaction.on_commit(lambda: _hand_over([(job, node)]), robust=True)  # announced as assigned
            else:
                pairs = enqueue_dispatch(queued=True, nodes=nodes)
                if mine := next((claimed for claimed, _node in pairs if claimed.id == job.id), None):
                    # Announced as assigned when handed over.
                    for name in Job.HANDED_OVER:
                        setattr(job, name, getattr(mine, name))
                else:
                    transaction.on_commit(lambda: job_announce(job=job), robust=True)
    except IntegrityError:
        # Two requests with one idempotency key raced; the other one created the job.
        if idempotency_key and (existing := _idempotent_job(owner, idempotency_key)):
            return existing
        raise
    return job  # _finish refreshed it if it failed at once


def _claim_new(job: Job, nodes: list[Node]) -> Node | None:
    try:
        with transaction.atomic():  # a savepoint: a failed claim leaves the job to be inserted queued
            return claim_new_job(job, nodes)
    except DatabaseError:
        log.warning("claiming a slot for a new job failed; it is queued", exc_info=True)
        return None


def job_wait(job: Job, *, timeout: float) -> Job:
    """The job once it ends or `timeout` s pass, read afresh with what its JSON shows; at once, as it is."""
    if not timeout or job.is_finished:
        return job
    job_wait_state(job, timeout=timeout)
    return Job.objects.for_json().get(id=job.id)


def job_wait_state(job: Job, *, timeout: float) -> str:
    """The job's state once it ends or `timeout` s pass: for a caller that needs no more of its row (a read of
    one column, not the job with its endpoint and node)."""
    if not timeout or job.is_finished:
        return job.state
    progress.wait_finished(
        job.id, timeout=timeout, is_finished=lambda: JOB_STATE.get(id=job.id) in Job.FINISHED_STATES
    )
    return JOB_STATE.get(id=job.id)


def _idempotent_job(owner, key: str) -> Job | None:
    return Job.objects.filter(owner=owner, idempotency_key=key).first()


def _unrunnable(prompt: dict[str, Any], nodes: list[Node]) -> str:
    if not nodes:
        return ""  # no fleet yet: the job waits for a node, up to the queue timeout
    missing = missing_models(prompt, [NodeView.from_node(node) for node in nodes])
    if not missing:
        return ""
    listed = "; ".join(f"{folder}: {', '.join(sorted(names))}" for folder, names in sorted(missing.items()))
    return f"No registered node has the models this job needs — missing {listed}."


def job_lease(*, job_id: Any, worker: str, handed_over: str = "") -> tuple[Job, bool] | None:
    """Take the right to execute an assigned or running job: the job, and whether an earlier executor may
    have posted its prompt; None if the job is finished or leased elsewhere.

    `handed_over`: the lease the claim granted with the job (Job.hand_over). The first executor takes it
    as it is, without a write (unless the message waited half the stale time: then it renews it); Celery
    delivers the message once (acked on receipt). If the job ended, or the reaper gave it to another
    executor meanwhile, the lease no longer matches.
    """
    if handed_over:
        try:
            job = HANDED_OVER.get(id=job_id, worker=handed_over)
        except Job.DoesNotExist:
            return None
        # A message that waited long for a free worker thread renews the lease before the reaper takes it.
        late = timezone.now() - timedelta(seconds=settings.COMFYROUTER_STALE_AFTER / 2)
        if job.heartbeat_at and job.heartbeat_at < late and not job_heartbeat(job=job, worker=worker):
            return None
        return job, False
    # Taken over from an executor that stopped heart-beating: it may have posted the prompt. A job claimed
    # before claims granted leases has no prompt id yet: it gets its ids here, before the POST.
    stale = timezone.now() - timedelta(seconds=settings.COMFYROUTER_STALE_AFTER)
    leasable = Job.objects.filter(id=job_id, state__in=IN_FLIGHT, node__isnull=False).filter(
        Q(worker="") | Q(worker=worker) | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale)
    )
    lease = {"worker": worker, "heartbeat_at": timezone.now()}
    fresh = leasable.filter(prompt_id="").update(**lease, **Job.prompt_ids(), attempts=F("attempts") + 1)
    if not fresh and not leasable.update(**lease):
        return None
    return Job.objects.select_related("node").defer("node__health").get(id=job_id), not fresh


def job_heartbeat(*, job: Job, worker: str) -> bool:
    """Refresh the lease, renamed for the executor `worker` (a handed-over lease does not name it); False
    when the job has ended or another worker took it over."""
    fresh = Job.objects.filter(id=job.id, worker=job.worker, state__in=IN_FLIGHT)
    if not fresh.update(heartbeat_at=timezone.now(), worker=worker):
        return False
    job.worker = worker
    return True


def job_resubmitting(*, job: Job) -> None:
    """Count one more attempt: the node had lost the prompt, which is posted again under the same ids."""
    Job.objects.filter(id=job.id).update(attempts=F("attempts") + 1)
    job.attempts += 1


def job_started(*, job: Job) -> None:
    """The node began the job: viewers are told now; the row is written by job_write_live (or the end)."""
    job.state, job.started_at = Job.State.RUNNING, timezone.now()
    job_announce(job=job)


def job_write_live(*, job: Job) -> None:
    """Write what the executor knows of an unfinished job: its progress, and its start once seen."""
    fields = dict(progress_value=job.progress_value, progress_max=job.progress_max, current_node=job.current_node)
    if job.state == Job.State.RUNNING:
        fields.update(state=job.state, started_at=job.started_at)
    Job.objects.filter(id=job.id, state__in=IN_FLIGHT).update(**fields)


def job_succeed(*, job: Job, outputs: list[JobOutput]) -> bool:
    """Mark the job done with its fetched output files, and learn from it for scheduling: one transaction."""
    # The executor's last step count, which a short job never wrote to the row (none: the row has none either).
    steps = job.progress_max
    full = {"progress_value": steps, "progress_max": steps} if steps else {}
    with transaction.atomic():
        if _finish(job, Job.State.SUCCEEDED, learn=True, **full):
            record_outputs(outputs)
            return True
    discard_outputs(outputs)
    return False


def job_fail(*, job: Job, error: str, error_node: str = "") -> bool:
    return _finish(job, Job.State.FAILED, error=error[:10_000], error_node=error_node[:200])


def job_cancel(*, job: Job) -> Job:
    """Cancel a queued job at once; ask the executor of an assigned or running one to interrupt it."""
    if _finish(job, Job.State.CANCELLED, states=(Job.State.QUEUED,), error="Cancelled before it started."):
        return job
    Job.objects.filter(id=job.id, state__in=IN_FLIGHT).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def job_cancelled(*, job: Job) -> bool:
    return _finish(job, Job.State.CANCELLED, error="Cancelled while it ran.")


def job_requeue(*, job: Job, cause: str) -> bool:
    """The node was lost: run the job again elsewhere, or fail it after the last attempt."""
    node = job.node.name if job.node else "its node"
    if job.attempts >= settings.COMFYROUTER_MAX_ATTEMPTS:
        return job_fail(
            job=job,
            error=f"Node {node} was lost ({cause}); gave up after {job.attempts} attempt(s).",
        )
    # A queued job's heartbeat_at is when it (re)entered the queue: the queue timeout counts from there.
    fields = dict(state=Job.State.QUEUED, node=None, prompt_id="", client_id="", worker="",
                  heartbeat_at=timezone.now(), assigned_at=None, started_at=None, progress_value=0,
                  progress_max=0, current_node="",
                  error=f"attempt {job.attempts} on {node} failed: {cause}")  # fmt: skip
    if not Job.objects.filter(id=job.id, state__in=IN_FLIGHT).update(**fields):
        return False
    if job.node_id:
        release_slot(node_id=job.node_id)
    log.warning("job %s requeued: node %s lost (%s)", job.id, node, cause)
    job.refresh_from_db()
    job_announce(job=job)
    enqueue_dispatch()
    return True


def _finish(job: Job, state: str, *, states=Job.ACTIVE_STATES, learn: bool = False, **fields: Any) -> bool:
    """Move an unfinished job to a final state exactly once; releases its node slot.

    `states`: those it may end from, Job.ACTIVE_STATES or (QUEUED,) for a job that never ran: a job in flight
    (assigned or running) is ended only on the node the caller knows it on. With `learn`, the node's slot row
    also records what the job taught the scheduler: the checkpoint it left loaded and its moving-average job
    time.
    """
    with transaction.atomic(savepoint=False):  # inside job_succeed's transaction: no savepoint to pay for
        now = timezone.now()
        # A due webhook is written with the final state: if the message sending it is lost, the sweep sends it.
        webhook = {"webhook_next_at": now} if job.webhook_url else {}
        if job.started_at and "started_at" not in fields:
            fields["started_at"] = job.started_at  # a job may end before its executor wrote its start
        values = {"state": state, "finished_at": now, "worker": "", **webhook, **fields}
        # Conditional UPDATEs decide, each atomic: the first frees the slot of the node the caller knows the
        # job on. A job in flight on another node (requeued and claimed again meanwhile) is not the caller's.
        freed = any(s in IN_FLIGHT for s in states) and _end_in_flight(job, values)
        queued = Job.State.QUEUED in states
        if not freed and not (queued and Job.objects.filter(id=job.id, state=Job.State.QUEUED).update(**values)):
            return False
        # Waiters first: the caller of a sync request is woken before the freed slot is refilled.
        transaction.on_commit(lambda: _finished(job), robust=True)
        if freed and job.node_id:
            release_slot(node_id=job.node_id, **(_learned(job, now) if learn else {}))
            enqueue_dispatch(node_id=job.node_id)  # the freed slot is refilled in this transaction
        for name, value in values.items():  # the written values go on the job: _finished reports the row
            setattr(job, name, value)
    return True


# An in-flight job's end, on the node the caller knows it on: compiled once for each set of fields written.
_END_IN_FLIGHT = PreparedUpdate(
    lambda job, node, **values: (Job.objects.filter(id=job, state__in=IN_FLIGHT, node_id=node), values)
)


def _end_in_flight(job: Job, values: dict[str, Any]) -> bool:
    if job.node_id is None:  # its node was deleted
        return bool(Job.objects.filter(id=job.id, state__in=IN_FLIGHT, node=None).update(**values))
    return bool(_END_IN_FLIGHT.run(job=job.id, node=job.node_id, **values))


def _finished(job: Job) -> None:
    from generations.tasks import send_webhook

    progress.notify_finished(job.id)
    job_announce(job=job)
    if job.webhook_url:
        send_webhook.delay(str(job.id))


def _learned(job: Job, finished_at) -> dict[str, Any]:
    """What a finished job teaches the scheduler about its node (release_slot): its time, its checkpoint."""
    seconds = (finished_at - job.started_at).total_seconds() if job.started_at else None
    return {"job_seconds": seconds, "checkpoint": primary_checkpoint(job.prompt)}


def job_announce(*, job: Job) -> None:
    """Tell live viewers (the job's page, the dashboard) the job's current state."""
    event = {"type": "job.state", "job_id": str(job.id), "state": job.state, "error": job.error}
    progress.publish(progress.job_group(job.id), event)
    progress.publish(progress.JOBS_GROUP, event)


def jobs_reap() -> list[Any]:
    """In-flight jobs whose executor stopped heart-beating: ids to hand to a new executor."""
    stale = timezone.now() - timedelta(seconds=settings.COMFYROUTER_STALE_AFTER)
    # assigned_at too: a requeued job carries its requeue time in heartbeat_at until an executor leases it.
    lost = Job.objects.filter(state__in=IN_FLIGHT, assigned_at__lt=stale).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)
    )
    ids = []
    for job in lost.select_related("node"):
        if job.node is None:
            job_fail(job=job, error="The job lost its node assignment.")
            continue
        # Mark the hand-over so the next sweep does not hand the job over again before it starts.
        if Job.objects.filter(id=job.id, state__in=IN_FLIGHT, heartbeat_at=job.heartbeat_at).update(
            heartbeat_at=timezone.now(), worker=""
        ):
            log.warning("job %s: executor stopped responding; handing it to another worker", job.id)
            ids.append(job.id)
    return ids


def jobs_expire_queued() -> int:
    """Fail queued jobs that waited longer than the queue timeout for a node."""
    limit = settings.COMFYROUTER_QUEUE_TIMEOUT
    since = Coalesce("heartbeat_at", "created_at")
    expired = Job.objects.queued().alias(since=since).filter(since__lt=timezone.now() - timedelta(seconds=limit))
    count = 0
    for job in expired:
        reason = f"No node could take this job in {limit} s"
        count += _finish(job, Job.State.FAILED, states=(Job.State.QUEUED,), error=f"{reason}{_why_no_node()}.")
    return count


def _why_no_node() -> str:
    nodes = list(Node.objects.filter(enabled=True))
    if not nodes:
        return " (no node is registered)"
    offline = [n.name for n in nodes if n.status == Node.Status.OFFLINE]
    if len(offline) == len(nodes):
        return f" (every node is offline: {', '.join(offline)})"
    return ""


def nodes_reconcile_slots() -> None:
    """Recount each node's used slots from the job table, correcting any drift."""
    for node in Node.objects.all():
        used = Job.objects.filter(node=node, state__in=IN_FLIGHT).count()
        if used != node.running:
            Node.objects.filter(id=node.id, running=node.running).update(running=used)


def jobs_purge() -> int:
    """Delete finished jobs (and their files) past the retention age or the history limit."""
    finished = Job.objects.finished()
    cutoff = timezone.now() - timedelta(days=settings.COMFYROUTER_JOB_RETENTION_DAYS)
    old = set(finished.filter(finished_at__lt=cutoff).values_list("id", flat=True))
    beyond = finished.order_by("-finished_at").values_list("id", flat=True)[settings.COMFYROUTER_HISTORY_LIMIT :]
    doomed = old | set(beyond)
    for job in Job.objects.filter(id__in=doomed).prefetch_related("outputs"):
        for output in job.outputs.all():
            output.file.delete(save=False)
        job.delete()
    return len(doomed)
