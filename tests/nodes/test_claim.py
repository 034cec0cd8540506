"""Claiming (job, node slot) pairs in the database, alone and from racing workers."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generations import services
from generations.models import Job
from generations.services import node_ready_dispatch
from nodes.dispatch import claim_jobs, claim_slot, model_files, release_slot
from nodes.models import Node, inventory_digest

pytestmark = pytest.mark.django_db(transaction=True)

GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0]}},
}
_seq = itertools.count()


def make_node(**kw) -> Node:
    n = next(_seq)
    kw = {"name": f"node-{n}", "base_url": f"http://127.0.0.1:{9000 + n}", "status": Node.Status.IDLE} | kw
    return Node.objects.create(**kw)


def make_job(**kw) -> Job:
    """A job as job_create queues it: its model files stored beside its prompt."""
    kw = {"prompt": GRAPH} | kw
    return Job.objects.create(**({"model_files": model_files(kw["prompt"])} | kw))


def make_queue(count: int, **kw) -> list[Job]:
    start = timezone.now()
    return [make_job(created_at=start + timedelta(milliseconds=i), **kw) for i in range(count)]


def test_claim_jobs_assigns_queued_jobs_and_counts_slots():
    a, b = make_node(), make_node(running=1)
    jobs = make_queue(5)

    claimed = claim_jobs()

    assert {job.id for job, _ in claimed} == {j.id for j in jobs[:3]}
    assert {job.state for job, _ in claimed} == {Job.State.ASSIGNED}
    assert Node.objects.get(id=a.id).running == 2 and Node.objects.get(id=b.id).running == 2
    stored = Job.objects.get(id=jobs[0].id)
    assert stored.state == Job.State.ASSIGNED and stored.node_id in {a.id, b.id} and stored.assigned_at
    assert Job.objects.queued().count() == 2
    assert claim_jobs() == []


def test_claim_jobs_honours_the_limit():
    make_node(capacity=4)
    make_queue(5)
    assert len(claim_jobs(limit=1)) == 1
    assert Job.objects.filter(state=Job.State.ASSIGNED).count() == 1


def test_a_late_client_is_reached_behind_a_backlog_deeper_than_the_window(django_user_model):
    heavy = django_user_model.objects.create(username="heavy")
    light = django_user_model.objects.create(username="light")
    make_node(capacity=2)
    make_queue(300, owner=heavy)
    late = make_job(owner=light)

    claimed = claim_jobs()

    assert late.id in {job.id for job, _ in claimed}


@pytest.mark.parametrize(
    "heavy, late",
    [
        ("key-1", "key-2"),  # one key's backlog, another key's job
        ("key-2", "key-1"),
        ("key-1", "owner-1"),  # the key's owner, without a key: another client
        ("owner-1", "key-1"),
        ("owner-2", "owner-1"),
        ("owner-1", "anonymous"),
        ("anonymous", "owner-1"),
    ],
)
def test_any_other_client_is_reached_behind_one_clients_backlog(django_user_model, heavy, late):
    from comfyrouter.services import api_key_create

    users = [django_user_model.objects.create(username=f"user-{n}") for n in (1, 2)]
    keys = [api_key_create(owner=users[0], name=f"key-{n}")[0] for n in (1, 2)]
    clients = {
        "key-1": {"owner": users[0], "api_key": keys[0]},
        "key-2": {"owner": users[0], "api_key": keys[1]},
        "owner-1": {"owner": users[0]},
        "owner-2": {"owner": users[1]},
        "anonymous": {},
    }
    make_node(capacity=2)
    make_queue(50, **clients[heavy])
    other = make_job(**clients[late])

    claimed = claim_jobs()

    assert other.id in {job.id for job, _ in claimed}


def test_claim_jobs_leaves_a_job_for_a_node_that_has_its_models():
    make_node(health={"models": {"checkpoints": ["sd15.safetensors"]}})
    make_job()
    assert claim_jobs() == []
    fitting = make_node(health={"models": {"checkpoints": ["sdxl.safetensors"]}})
    assert [node.id for _, node in claim_jobs()] == [fitting.id]


def test_jobs_stuck_at_the_head_do_not_keep_a_runnable_job_from_a_free_node():
    make_node(capacity=1, health={"models": {"checkpoints": ["sdxl.safetensors"]}})
    sd15 = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}}}
    make_queue(10, prompt=sd15)
    runnable = make_job()
    assert [job.id for job, _ in claim_jobs()] == [runnable.id]


SDXL_ONLY = {"models": {"checkpoints": ["sdxl.safetensors"]}}
SD15_ONLY = {"models": {"checkpoints": ["sd15.safetensors"]}}


@pytest.mark.parametrize("write", ["update", "save", "save_update_fields"])
def test_a_changed_inventory_places_the_next_job(write):
    had, gets = make_node(health=SDXL_ONLY), make_node(health=SD15_ONLY)
    make_job()
    assert [node.id for _, node in claim_jobs()] == [had.id]  # parsed and kept
    Job.objects.update(state=Job.State.SUCCEEDED)
    Node.objects.update(running=0)
    for node, health in ((had, SD15_ONLY), (gets, SDXL_ONLY)):
        if write == "update":
            Node.objects.filter(id=node.id).update(health=health)
        else:
            node.health = health
            node.save(**({"update_fields": ["health"]} if write == "save_update_fields" else {}))
    make_job()
    assert [node.id for _, node in claim_jobs()] == [gets.id]


def test_a_claim_reads_no_inventory_until_one_changes():
    big = {"models": {"checkpoints": ["sdxl.safetensors"], "loras": [f"lora-{i}.safetensors" for i in range(500)]}}
    nodes = [make_node(health=big, capacity=1) for _ in range(3)]
    make_queue(3)
    claim_jobs(limit=1)  # parses the inventories once
    with CaptureQueriesContext(connection) as queries:
        assert len(claim_jobs(limit=1)) == 1
    assert not [q["sql"] for q in queries if "health" in q["sql"]]
    Node.objects.filter(id=nodes[2].id).update(health={"models": {"checkpoints": ["sdxl.safetensors"]}})
    with CaptureQueriesContext(connection) as queries:
        assert len(claim_jobs(limit=1)) == 1
    assert len([q for q in queries if "health" in q["sql"]]) == 1  # the changed one, once


def test_the_digest_follows_every_write_of_the_health_document():
    node = make_node(health=SDXL_ONLY)
    assert node.inventory_digest == inventory_digest(SDXL_ONLY) == Node.objects.get(id=node.id).inventory_digest
    assert inventory_digest({"gpu": "x", **SDXL_ONLY}) == inventory_digest(SDXL_ONLY) != inventory_digest({})
    Node.objects.filter(id=node.id).update(health={})
    assert Node.objects.get(id=node.id).inventory_digest == inventory_digest({})
    node.health = SD15_ONLY
    node.save(update_fields=["health"])
    assert Node.objects.get(id=node.id).inventory_digest == inventory_digest(SD15_ONLY)


def test_a_claim_reads_the_queue_without_prompts():
    make_node(capacity=1, health=SD15_ONLY)
    fitting = make_node(capacity=1, health=SDXL_ONLY)
    make_queue(3)
    with CaptureQueriesContext(connection) as queries:
        claimed = claim_jobs()
    assert [node.id for _, node in claimed] == [fitting.id]
    assert not [q["sql"] for q in queries if '"prompt"' in q["sql"] or '"inputs"' in q["sql"]]


def test_a_queued_job_stores_the_model_files_its_prompt_loads():
    job = services.job_create(prompt={**GRAPH, "7": {"class_type": "VAELoader", "inputs": {"vae_name": "b.vae"}}})
    assert Job.objects.get(id=job.id).model_files == {"checkpoints": ["sdxl.safetensors"], "vae": ["b.vae"]}


def test_a_job_without_stored_model_files_is_placed_by_its_prompt():
    make_node(health=SD15_ONLY)
    fitting = make_node(health=SDXL_ONLY)
    make_job(model_files=None)  # queued before the field existed
    assert [node.id for _, node in claim_jobs()] == [fitting.id]


@pytest.mark.parametrize("kw", [{"running": 2}, {"status": Node.Status.DRAINING}, {"enabled": False}])
def test_claim_slot_refuses_full_draining_and_disabled_nodes(kw):
    node = make_node(**kw)
    assert claim_slot(node_id=node.id) is False
    assert Node.objects.get(id=node.id).running == kw.get("running", 0)


def test_slots_are_taken_up_to_capacity_and_released_never_below_zero():
    node = make_node(status=Node.Status.BUSY)
    assert [claim_slot(node_id=node.id) for _ in range(3)] == [True, True, False]
    assert [release_slot(node_id=node.id) for _ in range(3)] == [True, True, False]
    assert Node.objects.get(id=node.id).running == 0


def run_workers(work, threads: int = 4) -> list[Exception]:
    errors: list[Exception] = []

    def target():
        try:
            work()
        except Exception as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=target) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return errors


def assigned_per_node() -> dict[int, int]:
    rows = Job.objects.filter(state=Job.State.ASSIGNED).values("node").annotate(n=Count("id")).order_by()
    return {row["node"]: row["n"] for row in rows}


def test_racing_claimers_fill_each_slot_once():
    nodes = [make_node() for _ in range(3)]
    make_queue(20)
    claims: list = []

    def work():
        while batch := claim_jobs():
            claims.extend(job.id for job, _ in batch)

    assert run_workers(work) == []
    assert len(claims) == len(set(claims)) == 6
    assert assigned_per_node() == {node.id: 2 for node in nodes}
    assert {n.running for n in Node.objects.all()} == {2}


def test_racing_claimers_run_every_job_exactly_once_within_capacity():
    nodes = [make_node() for _ in range(3)]
    make_queue(20)
    claims: list = []
    peaks: list[int] = []

    def work():
        deadline = time.monotonic() + 30
        while Job.objects.queued().exists() and time.monotonic() < deadline:
            batch = claim_jobs()
            peaks.append(max(assigned_per_node().values(), default=0))
            for job, node in batch:
                claims.append(job.id)
                Job.objects.filter(id=job.id).update(state=Job.State.SUCCEEDED)
                release_slot(node_id=node.id)

    assert run_workers(work) == []
    assert len(claims) == len(set(claims)) == 20
    assert max(peaks) <= 2
    assert {n.running for n in Node.objects.all()} == {0}
    assert set(Job.objects.values_list("node", flat=True)) <= {n.id for n in nodes}


def test_a_node_ready_again_claims_for_its_own_slots():
    ready, other = make_node(), make_node()
    make_queue(6)
    node_ready_dispatch(sender=Node, node=ready)
    assert Node.objects.get(id=ready.id).running == 2 and Node.objects.get(id=other.id).running == 0


@pytest.mark.skipif(not connection.features.has_select_for_update_skip_locked, reason="row locks: PostgreSQL")
def test_nodes_resumed_at_once_each_get_their_jobs_though_earlier_claimers_lock_the_queue():
    # Each resume claims for the nodes ready so far, reading (locking) 4 jobs per free slot: the first few
    # claimers can hold every queued job, and a later node's own claim then found none to take.
    for _ in range(3):
        Job.objects.all().delete()
        Node.objects.all().delete()
        nodes = [make_node(status=Node.Status.DRAINING) for _ in range(16)]
        make_queue(150)
        start = threading.Barrier(len(nodes))

        def resume(node: Node, start: threading.Barrier) -> None:
            start.wait()
            Node.objects.filter(id=node.id).update(status=Node.Status.IDLE)  # as node_resume commits it
            node_ready_dispatch(sender=Node, node=node)  # and as node_ready then dispatches
            connection.close()

        threads = [threading.Thread(target=resume, args=(node, start)) for node in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert sorted(Node.objects.values_list("running", flat=True)) == [2] * 16
