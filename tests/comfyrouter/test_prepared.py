"""Prepared reads give what the ORM gives, in one query, with each call's values."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F, Q, Value
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from comfyrouter.prepared import Prepared, PreparedUpdate
from generations.models import Job
from nodes.models import Node

pytestmark = pytest.mark.django_db

IN_FLIGHT = [Job.State.ASSIGNED, Job.State.RUNNING]


def leased_rows(id, worker):  # noqa: A002 - the lookup's own name
    rows = Job.objects.select_related("node").defer("node__health")
    return rows.filter(id=id, worker=worker, state__in=IN_FLIGHT, node__isnull=False)


@pytest.fixture
def jobs() -> list[Job]:
    node = Node.objects.create(name="gpu", base_url="http://127.0.0.1:9", health={"models": {"loras": ["a"]}})
    return [
        Job.objects.create(
            prompt={"1": {"n": i}},
            inputs={"i": i},
            node=node,
            state=Job.State.ASSIGNED,
            worker=f"w{i}",
            prompt_id=str(uuid.uuid4()),
            priority=i,
        )  # fmt: skip
        for i in range(3)
    ]


def fields(instance) -> dict:
    deferred = instance.get_deferred_fields()
    return {
        f.attname: getattr(instance, f.attname)
        for f in instance._meta.concrete_fields
        if f.attname not in deferred
    }


def test_model_rows_with_their_related_object_are_the_orms(jobs):
    leased = Prepared(leased_rows)
    for job in jobs:
        for id_form in (job.id, str(job.id)):  # a UUID or its text, as a message carries it
            with CaptureQueriesContext(connection) as queries:
                got = leased.get(id=id_form, worker=job.worker)
            want = leased_rows(job.id, job.worker).get()
            assert len(queries) == 1
            assert fields(got) == fields(want) and got.get_deferred_fields() == want.get_deferred_fields()
            assert fields(got.node) == fields(want.node) and got.node.get_deferred_fields() == {"health"}
            assert (got._state.adding, got._state.db) == (False, "default")
            assert got.prompt == {"1": {"n": job.priority}} and got.created_at == want.created_at


def test_get_raises_as_the_querysets_get(jobs):
    leased = Prepared(leased_rows)
    with pytest.raises(Job.DoesNotExist):
        leased.get(id=jobs[0].id, worker="someone else")
    by_node = Prepared(lambda node: Job.objects.filter(node_id=node))
    with pytest.raises(Job.MultipleObjectsReturned):
        by_node.get(node=jobs[0].node_id)
    assert {job.id for job in by_node.all(node=jobs[0].node_id)} == {job.id for job in jobs}
    assert by_node.all(node=jobs[0].node_id + 1) == []


def test_values_list_rows(jobs):
    flat = Prepared(lambda worker: Job.objects.filter(worker=worker).values_list("priority", flat=True))
    pairs = Prepared(lambda priority: Job.objects.filter(priority__gte=priority).values_list("worker", "inputs"))
    assert [flat.all(worker=job.worker) for job in jobs] == [[0], [1], [2]]
    assert sorted(pairs.all(priority=1)) == [("w1", {"i": 1}), ("w2", {"i": 2})]


def test_count_is_the_querysets(jobs):
    at_least = Prepared(lambda priority: Job.objects.filter(priority__gte=priority).values_list("pk", flat=True))

    with CaptureQueriesContext(connection) as queries:
        counts = [at_least.count(priority=priority) for priority in range(4)]

    assert counts == [Job.objects.filter(priority__gte=priority).count() for priority in range(4)] == [3, 2, 1, 0]
    assert len(queries) == 4


def test_a_value_used_twice_fills_both_parameters(jobs):
    either = Prepared(
        lambda key: Job.objects.filter(Q(worker=key) | Q(prompt_id=key)).values_list("id", flat=True)
    )
    assert either.all(key=jobs[1].worker) == [jobs[1].id]
    assert either.all(key=jobs[2].prompt_id) == [jobs[2].id]


@pytest.mark.parametrize(
    ("build", "value", "refusal"),
    [
        (lambda n: Job.objects.all()[:n], 2, "changes the SQL"),  # a LIMIT is SQL, not a parameter
        (lambda worker: Job.objects.filter(worker=worker), None, "not None"),  # = NULL is IS NULL
        (lambda flag: Job.objects.filter(cancel_requested=flag), True, "not True"),
        (lambda n: Job.objects.annotate(x=Q(priority=n)), 1, "nothing else"),  # not a plain read
    ],
)
def test_what_is_not_a_plain_parameter_is_refused(jobs, build, value, refusal):
    with pytest.raises(TypeError, match=refusal):
        Prepared(build).all(**{build.__code__.co_varnames[0]: value})


def test_an_update_sets_what_each_call_gives_and_counts_the_rows(jobs):
    node = jobs[0].node
    bump = PreparedUpdate(
        lambda node, by=None, name=None: (
            Node.objects.filter(id=node, running__gte=0),
            {"running": F("running") + 1, **({"avg_job_seconds": Value(by) * 2} if by is not None else {}),
             **({"name": name} if name is not None else {})},
        )
    )  # fmt: skip
    assert bump.run(node=node.id) == 1
    assert bump.run(node=node.id, by=1.25) == 1
    assert bump.run(node=node.id, by=2.5, name="renamed") == 1
    assert bump.run(node=node.id + 1) == 0
    node.refresh_from_db()
    assert (node.running, node.avg_job_seconds, node.name) == (3, 5.0, "renamed")


def test_an_update_across_tables_is_refused(jobs):
    by_node_name = PreparedUpdate(lambda name: (Job.objects.filter(node__name=name), {"priority": 5}))
    with pytest.raises(TypeError, match="one table"):
        by_node_name.run(name="gpu")


def test_datetimes_and_choices_are_values_too(jobs):
    hand = PreparedUpdate(lambda job, **fields: (Job.objects.filter(id=job), fields))
    at = timezone.now()
    later = at + timedelta(seconds=5, microseconds=7)
    assert hand.run(job=jobs[0].id, state=Job.State.RUNNING, started_at=at, heartbeat_at=at) == 1
    assert hand.run(job=jobs[1].id, state=Job.State.SUCCEEDED, started_at=later, heartbeat_at=later) == 1
    written = Job.objects.filter(id__in=[jobs[0].id, jobs[1].id])
    rows = {job.id: (job.state, job.started_at, job.heartbeat_at) for job in written}
    assert rows == {jobs[0].id: ("running", at, at), jobs[1].id: ("succeeded", later, later)}
    since = Prepared(lambda at: Job.objects.filter(heartbeat_at__gte=at).values_list("id", flat=True))
    assert set(since.all(at=at)) == {jobs[0].id, jobs[1].id} and since.all(at=later) == [jobs[1].id]
