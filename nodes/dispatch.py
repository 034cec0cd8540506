"""The scheduler: which queued job runs on which node. Pure planning, then atomic claims."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, QuerySet, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from comfyrouter.prepared import Prepared, PreparedUpdate
from generations.models import Job
from nodes.models import Node

# Queued jobs a claim reads (each client's first jobs, then their next ones): a few per free
# slot first, the whole window when those can't run on the free nodes.
JOBS_PER_SLOT = 4
QUEUE_WINDOW = 200
# Not read with the queue window: a claim needs a job's model files (Job.model_files), not its graph.
WINDOW_DEFERRED = ("prompt", "inputs")

# Graph input name -> ComfyUI models folder (the names GET /models lists).
_INPUT_FOLDERS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "control_net_name": "controlnet",
    "upscale_model": "upscale_models",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
}
# Inputs whose folder depends on the loader: CLIPVisionLoader's clip_name is not a text encoder,
# and model_name is a file only for UpscaleModelLoader (API nodes use it for remote model ids).
_CLASS_INPUT_FOLDERS = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
}
_FOLDER_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}
# VAELoader offers these built-in choices; they are not files in models/vae.
_BUILTIN_VAES = frozenset({"pixel_space", "taesd", "taesdxl", "taesd3", "taef1"})

Models = frozenset[tuple[str, str]]  # (folder, filename) pairs


def model_folder(class_type: Any, input_name: str) -> str | None:
    """The models folder an input of this node class names a file of, or None."""
    return _CLASS_INPUT_FOLDERS.get((class_type, input_name)) or _INPUT_FOLDERS.get(input_name)


def required_models(graph: Mapping[str, Any]) -> dict[str, set[str]]:
    """Model files an API-format graph loads, by ComfyUI folder name."""
    found: dict[str, set[str]] = {}
    nodes = graph.values() if isinstance(graph, Mapping) else ()
    for node in nodes:
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name, value in inputs.items():
            folder = model_folder(node.get("class_type"), name)
            # A list value is a link to another node's output, not a file name.
            if not folder or not isinstance(value, str) or not value:
                continue
            if folder == "vae" and value in _BUILTIN_VAES:
                continue
            found.setdefault(folder, set()).add(_normalise(value))
    return found


def model_files(graph: Mapping[str, Any]) -> dict[str, list[str]]:
    """required_models as stored on a job (Job.model_files)."""
    return {folder: sorted(names) for folder, names in required_models(graph).items()}


def primary_checkpoint(graph: Mapping[str, Any]) -> str:
    """The model a node keeps loaded after running this graph: its checkpoint, else its diffusion model."""
    return _primary(required_models(graph))


def fairness_key(*, api_key_id: int | None, owner_id: int | None) -> str:
    """Who a job is fair-shared as: its API key, else its owner, else the anonymous pool."""
    if api_key_id is not None:
        return f"key:{api_key_id}"
    return f"user:{owner_id}" if owner_id is not None else "anonymous"


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the scheduler knows about a node."""

    id: int
    name: str
    capacity: int = 2
    running: int = 0
    status: str = Node.Status.IDLE
    enabled: bool = True
    loaded_checkpoint: str = ""
    avg_job_seconds: float | None = None
    # None: the node never reported its models, so it is assumed to have them all.
    models: Mapping[str, frozenset[str]] | None = None

    @classmethod
    def from_node(cls, node: Node) -> NodeView:
        return cls(
            id=node.id,
            name=node.name,
            capacity=node.capacity,
            running=node.running,
            status=node.status,
            enabled=node.enabled,
            loaded_checkpoint=_normalise(node.loaded_checkpoint),
            avg_job_seconds=node.avg_job_seconds,
            models=node_inventory(node),
        )

    @property
    def free_slots(self) -> int:
        return max(self.capacity - self.running, 0)

    @property
    def accepts_jobs(self) -> bool:
        return self.enabled and self.status in Node.ACCEPTING

    def lacks(self, models: Models) -> Models:
        """The files this node is known not to have; a folder it never reported is unknown, not empty."""
        if self.models is None:
            return frozenset()
        return frozenset(m for m in models if m[0] in self.models and m[1] not in self.models[m[0]])


@dataclass(frozen=True, slots=True)
class JobView:
    """What the scheduler knows about a queued job."""

    id: Any
    created_at: datetime
    priority: int = 0
    client: str = "anonymous"
    models: Models = frozenset()
    checkpoint: str = ""

    @classmethod
    def from_job(cls, job: Job) -> JobView:
        """From a job read with its prompt deferred (`WINDOW_DEFERRED`), if its model files are stored."""
        if job.model_files is None:
            required = required_models(job.prompt)
        else:
            required = {folder: set(names) for folder, names in job.model_files.items()}
        return cls(
            id=job.id,
            created_at=job.created_at,
            priority=job.priority,
            client=fairness_key(api_key_id=job.api_key_id, owner_id=job.owner_id),
            models=_as_pairs(required),
            checkpoint=_primary(required),
        )


def graph_models(graph: Mapping[str, Any]) -> Models:
    """The (folder, file) pairs a graph loads."""
    return _as_pairs(required_models(graph))


def _as_pairs(required: Mapping[str, set[str]]) -> Models:
    return frozenset((folder, name) for folder, names in required.items() for name in names)


def rank_nodes(nodes: Iterable[NodeView], *, job: JobView) -> list[NodeView]:
    """Nodes that can take the job now, best first: checkpoint loaded, least loaded, fastest, by name."""
    able = [n for n in nodes if n.accepts_jobs and n.free_slots and not n.lacks(job.models)]
    return sorted(able, key=lambda node: _preference(node, job))


def fair_order(jobs: Iterable[JobView], *, in_flight: Mapping[str, int] | None = None) -> list[JobView]:
    """Jobs by priority, then round-robin between clients (fewest in flight first), then FIFO."""
    in_flight = in_flight or {}
    fifo = sorted(jobs, key=lambda job: (-job.priority, job.created_at, job.id))
    served: dict[tuple[int, str], int] = {}
    turns = []
    for job in fifo:
        key = (job.priority, job.client)
        turn = served.get(key, in_flight.get(job.client, 0))
        served[key] = turn + 1
        turns.append((-job.priority, turn))
    # A stable sort keeps FIFO order among jobs with the same priority and turn.
    return [fifo[i] for i in sorted(range(len(fifo)), key=turns.__getitem__)]


def plan(
    jobs: Sequence[JobView], nodes: Sequence[NodeView], *, in_flight: Mapping[str, int] | None = None
) -> list[tuple[Any, int]]:
    """Pair queued jobs with free node slots, filling every slot a runnable job can use."""
    free = {node.id: node for node in nodes if node.accepts_jobs and node.free_slots}
    slots = sum(node.free_slots for node in free.values())
    capable: dict[Models, list[int]] = {}
    pairs: list[tuple[Any, int]] = []
    for job in fair_order(jobs, in_flight=in_flight):
        if not slots:
            break
        if job.models not in capable:
            capable[job.models] = [i for i, node in free.items() if not node.lacks(job.models)]
        ranked = rank_nodes((free[i] for i in capable[job.models]), job=job)
        if not ranked:
            # Slots only fill up during a plan: later jobs needing the same models can't run either.
            capable[job.models] = []
            continue
        best = ranked[0]
        free[best.id] = replace(best, running=best.running + 1)
        pairs.append((job.id, best.id))
        slots -= 1
    return pairs


def missing_models(graph: Mapping[str, Any], nodes: Iterable[NodeView]) -> dict[str, set[str]] | None:
    """Model files that keep every node from running the graph; None when some node has them all."""
    required = required_models(graph)
    wanted = frozenset((folder, name) for folder, names in required.items() for name in names)
    gaps = [node.lacks(wanted) for node in nodes]
    if not wanted or not all(gaps):
        return None
    if not gaps:
        return required
    nowhere = frozenset.intersection(*gaps)
    # Each file is on some node but none has all: name what the best-equipped node lacks.
    return _by_folder(nowhere or min(gaps, key=lambda gap: (len(gap), sorted(gap))))


# A slot's two writes, each one conditional UPDATE: the database, not a read-then-write, decides who gets the
# slot. Compiled once (comfyrouter.prepared): every job takes a slot and gives it back.
_CLAIM_SLOT = PreparedUpdate(
    lambda node: (Node.objects.dispatchable().filter(id=node), {"running": F("running") + 1})
)
_RELEASE_SLOT = PreparedUpdate(
    lambda node, seconds=None, checkpoint=None: (
        Node.objects.filter(id=node, running__gt=0),
        {"running": F("running") - 1, **_learning(seconds, checkpoint)},
    )
)


# A claimed job's row: still queued, it is handed over (Job.hand_over's fields, the node by its id).
_HAND_OVER = PreparedUpdate(
    lambda job, node, **fields: (Job.objects.filter(id=job, state=Job.State.QUEUED), {"node_id": node, **fields})
)


def claim_slot(*, node_id: int) -> bool:
    """Take one slot on an enabled, idle or busy node; False when another worker took the last one."""
    return _CLAIM_SLOT.run(node=node_id) == 1


def release_slot(*, node_id: int, job_seconds: float | None = None, checkpoint: str = "") -> bool:
    """Give back one slot on the node, never going below zero. A finished job's time goes into the node's moving
    average, and the checkpoint it loaded is noted, alongside."""
    learned = {"seconds": float(job_seconds)} if job_seconds is not None else {}
    if checkpoint:
        learned["checkpoint"] = checkpoint
    return _RELEASE_SLOT.run(node=node_id, **learned) == 1


def _learning(seconds: float | None, checkpoint: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if seconds is not None:
        # NULL (no job timed yet) stays NULL through the arithmetic: the first job's time is taken as it is.
        fields["avg_job_seconds"] = Coalesce(F("avg_job_seconds") * 0.8 + Value(seconds) * 0.2, Value(seconds))
    if checkpoint is not None:
        fields["loaded_checkpoint"] = checkpoint
    return fields


def claim_jobs(
    *,
    limit: int | None = None,
    node_id: int | None = None,
    nodes: Iterable[Node] | None = None,
    wait_for_locked: bool = False,
) -> list[tuple[Job, Node]]:
    """Assign queued jobs to free node slots in one transaction (or the caller's); returns the pairs won.

    `node_id`: only that node's slots, as when a transaction that already holds the node's row (a job's
    end) refills it; it then takes no other node's row lock, and no cycle can form with other claimers.
    `nodes`: the nodes as the caller's transaction read them, if it did (a slot is taken only if the
    node's row still has it free).
    `wait_for_locked`: when other claimers hold every job the window would read (PostgreSQL), wait for them
    and read what they leave queued, instead of claiming nothing. Only for a claim in a transaction of its
    own, which holds no row before it reads the queue: waiting then closes no lock cycle.
    """
    with transaction.atomic(savepoint=False):
        if nodes is None:
            candidates = Node.objects.dispatchable().defer("health").order_by()  # node_inventory; rank_nodes sorts
            nodes = candidates if node_id is None else candidates.filter(id=node_id)
        nodes = {node.id: node for node in nodes if node_id in (None, node.id)}
        views = [NodeView.from_node(node) for node in nodes.values()]
        slots = sum(view.free_slots for view in views if view.accepts_jobs)
        slots = slots if limit is None else min(slots, limit)
        if not slots:
            return []
        jobs, pairs = _plan_queue(views, slots=slots, wait_for_locked=wait_for_locked)
        # Node rows are updated in id order so two PostgreSQL claimers never wait on each other in a cycle.
        pairs = sorted(pairs[:slots], key=lambda pair: pair[1])
        return [(jobs[j], nodes[n]) for j, n in pairs if _claim(jobs[j], nodes[n])]


def claim_new_job(job: Job, nodes: Iterable[Node]) -> Node | None:
    """Give a job not inserted yet a node slot, when the caller saw no other job queued: the plan needs no read
    of the queue, and the job is inserted assigned, not updated after. Returns the node whose slot it took (the
    job's fields are set as the claim writes them), or None when no node can take it now."""
    nodes = {node.id: node for node in nodes}
    for _job_id, node_id in plan([JobView.from_job(job)], [NodeView.from_node(node) for node in nodes.values()]):
        if claim_slot(node_id=node_id):
            for name, value in job.hand_over(nodes[node_id], timezone.now()).items():
                setattr(job, name, value)
            return nodes[node_id]
    return None


def _plan_queue(
    nodes: list[NodeView], *, slots: int, wait_for_locked: bool
) -> tuple[dict[Any, Job], list[tuple[Any, int]]]:
    in_flight: dict[str, int] | None = None
    # Most calls fill a slot or two from the head of the queue, so read a few jobs per slot; the
    # wide window is read only when those can't use the free nodes (no head-of-line blocking).
    for size in (min(slots * JOBS_PER_SLOT, QUEUE_WINDOW), QUEUE_WINDOW):
        window, read = _lock_queue_window(size, wait_for_locked=wait_for_locked)
        jobs = {job.id: job for job in window}
        views = [JobView.from_job(job) for job in jobs.values()]
        # In-flight counts only change the order between clients: one client's window needs none.
        if in_flight is None and len({view.client for view in views}) > 1:
            in_flight = _in_flight()
        pairs = plan(views, nodes, in_flight=in_flight)
        if len(pairs) >= slots or read < size:
            break
    return jobs, pairs


def _claim(job: Job, node: Node) -> bool:
    if not claim_slot(node_id=node.id):
        return False
    # `attempts` as read in this transaction, which holds the job's row (lock or SQLite's write lock).
    fields = job.hand_over(node, timezone.now())
    if not _HAND_OVER.run(job=job.id, **{**fields, "node": node.id}):
        release_slot(node_id=node.id)  # cancelled meanwhile
        return False
    for name, value in fields.items():
        setattr(job, name, value)
    return True


def _lock_queue_window(size: int, *, wait_for_locked: bool) -> tuple[list[Job], int]:
    """The next `size` queued jobs in fair order that this transaction could lock, and how many it read."""
    # Index order first: with one client it is the fair order (its turns follow its created_at), and the
    # window's sort of the whole queue (1.1 ms at 1,000 queued jobs, in the write lock) is not needed.
    # (Rows other claimers hold are not in it: they are being assigned, and do not change whose turn it is.)
    head = _queue_head(size, skip_locked=True)
    if not head and wait_for_locked and connection.features.has_select_for_update_skip_locked:
        # Every row is held, by claimers assigning them to the nodes they saw. A node that became ready after
        # they looked (16 nodes resumed at once) would get nothing until the next sweep: wait for them instead,
        # and read the jobs they left queued.
        head = _queue_head(size, skip_locked=False)
    if _one_client(head, size):
        return head, len(head)
    ids = _fair_queue_ids(size)
    # Never waits: this transaction holds the head's rows by now, and a claimer waiting for them could be
    # waiting for this one.
    window = Job.objects.queued().defer(*WINDOW_DEFERRED).filter(id__in=ids).order_by()
    return list(_locked(window, skip_locked=True)), len(ids)


# The head of the queue, read by every claim: compiled once per size and way of locking (comfyrouter.prepared).
_QUEUE_HEADS: dict[tuple[int, bool], Prepared] = {}


def _queue_head(size: int, *, skip_locked: bool) -> list[Job]:
    """The first `size` queued jobs in index order, locked where the database has row locks: skipping the rows
    other claimers hold, or waiting for them."""
    if (size, skip_locked) not in _QUEUE_HEADS:
        head = Job.objects.queued().defer(*WINDOW_DEFERRED).order_by("-priority", "created_at", "id")[:size]
        _QUEUE_HEADS[size, skip_locked] = Prepared(lambda: _locked(head, skip_locked=skip_locked))
    return _QUEUE_HEADS[size, skip_locked].all()


def _locked(jobs: QuerySet[Job], *, skip_locked: bool) -> QuerySet[Job]:
    """`jobs` read with row locks (PostgreSQL); SQLite's claim already holds the database's one write lock.
    Skipped rows are those another claimer holds: it is assigning them now."""
    if not connection.features.has_select_for_update_skip_locked:
        return jobs
    return jobs.select_for_update(skip_locked=skip_locked)


def _fair_queue_ids(size: int) -> list[Any]:
    """The ids of the next `size` queued jobs, taking turns between clients at each priority."""
    # Numbering each client's jobs puts every client's head in the window, however deep one
    # client's backlog is, without loading that backlog.
    turn = Window(
        RowNumber(),
        partition_by=[F("priority"), F("api_key_id"), F("owner_id")],
        order_by=[F("created_at").asc(), F("id").asc()],
    )
    window = Job.objects.queued().annotate(turn=turn).order_by("-priority", "turn", "created_at", "id")
    # Ids only: the window sorts the whole queue, and whole rows (prompts of kilobytes) sort 6x slower.
    # PostgreSQL also allows no FOR UPDATE beside a window function.
    return list(window.values_list("id", flat=True)[:size])


def _one_client(head: list[Job], size: int) -> bool:
    """Whether every queued job is one client's: the head shows it, unless it is full and may hide others."""
    if len({(job.api_key_id, job.owner_id) for job in head}) > 1:
        return False
    return len(head) < size or len(_queue_client_ends()) < 2


def _queue_client_ends() -> set[tuple[Any, Any]]:
    """The queue's first and last (api key, owner) in the job_queue_clients index's order: equal only if all
    are. Two index seeks, however deep one client's backlog is (a DISTINCT over the queue read all of it: 2.5 ms
    at 5,000 queued jobs, in the write lock of every claim). In SQL: the ORM cannot limit the parts of a UNION
    on SQLite, and two ORM queries cost more than the DISTINCT at a queue of 100."""
    quote = connection.ops.quote_name
    table = quote(Job._meta.db_table)
    state, key, owner = (quote(Job._meta.get_field(name).column) for name in ("state", "api_key", "owner"))
    end = f"SELECT {key}, {owner} FROM {table} WHERE {state} = %s ORDER BY {key} {{0}}, {owner} {{0}} LIMIT 1"
    sql = f"SELECT * FROM ({end.format('ASC')}) lowest UNION ALL SELECT * FROM ({end.format('DESC')}) highest"
    with connection.cursor() as cursor:
        cursor.execute(sql, [Job.State.QUEUED, Job.State.QUEUED])
        return set(cursor.fetchall())


def _in_flight() -> dict[str, int]:
    active = Job.objects.filter(state__in=[Job.State.ASSIGNED, Job.State.RUNNING]).order_by()
    counts: dict[str, int] = {}
    for row in active.values("api_key_id", "owner_id").annotate(n=Count("id")):
        key = fairness_key(api_key_id=row["api_key_id"], owner_id=row["owner_id"])
        counts[key] = counts.get(key, 0) + row["n"]
    return counts


def _preference(node: NodeView, job: JobView) -> tuple[Any, ...]:
    reloads = not (job.checkpoint and node.loaded_checkpoint == job.checkpoint)
    load = node.running / node.capacity
    speed = node.avg_job_seconds
    return (reloads, load, node.running, speed is None, speed or 0.0, node.name, node.id)


def _primary(required: Mapping[str, set[str]]) -> str:
    return min(required.get("checkpoints") or required.get("diffusion_models") or (), default="")


# Each node's parsed inventory, with its digest. A production node lists thousands of files: reading and parsing
# every node's for each claim, in the write lock, doubled the web's CPU per job with 16 nodes of 2,000 LoRAs.
_inventories: dict[int, tuple[str, dict[str, frozenset[str]] | None]] = {}
INVENTORIES_KEPT = 4096  # nodes; removed ones are dropped when a fleet has seen more


def node_inventory(node: Node) -> dict[str, frozenset[str]] | None:
    """The model files `node` reported, by folder (None: it never did). A node read with `health` deferred costs
    neither a parse nor a read of the document here until its inventory changes."""
    digest, models = _inventories.get(node.id, ("", None))
    if node.inventory_digest and node.inventory_digest == digest:
        return models
    if "health" in node.get_deferred_fields():
        row = Node.objects.filter(id=node.id).values_list("health", "inventory_digest").first()
        health, digest = row or ({}, "")
    else:
        health, digest = node.health, node.inventory_digest
    models = _node_models(health.get("models") if isinstance(health, Mapping) else None)
    if digest:  # "" (written by bulk_create or raw SQL): not known to match, so not kept
        if len(_inventories) >= INVENTORIES_KEPT:
            _inventories.clear()
        _inventories[node.id] = (digest, models)
    return models


def _node_models(raw: object) -> dict[str, frozenset[str]] | None:
    if not isinstance(raw, Mapping):
        return None
    merged: dict[str, set[str]] = {}
    for folder, names in raw.items():
        files = merged.setdefault(_FOLDER_ALIASES.get(folder, folder), set())
        if isinstance(names, list | tuple):
            files.update(_normalise(str(name)) for name in names)
    return {folder: frozenset(files) for folder, files in merged.items()}


def _by_folder(models: Models) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder, name in models:
        found.setdefault(folder, set()).add(name)
    return found


def _normalise(filename: str) -> str:
    # Windows nodes list subfolders with backslashes; the same file must match from any node.
    return filename.replace("\\", "/")
