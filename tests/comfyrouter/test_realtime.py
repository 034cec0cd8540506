"""The publisher's conflation, pacing and audience: only superseded progress and previews, and those no one
watches, are dropped; order is kept."""

import asyncio
import time
import uuid

import pytest
import redis
from channels.layers import get_channel_layer

from comfyrouter.realtime import Audience, Pacer, conflate, publish
from comfyrouter.redisconn import redis_client


def progress(job: str, value: int) -> dict:
    return {"type": "job.progress", "job_id": job, "value": value}


def preview(job: str, seq: int) -> dict:
    return {"type": "job.preview", "job_id": job, "seq": seq}


def state(job: str, name: str) -> dict:
    return {"type": "job.state", "job_id": job, "state": name}


def test_newer_progress_and_preview_replace_older_ones_of_the_same_job():
    batch = [
        ("job-a", state("a", "running")),
        ("job-a", progress("a", 1)),
        ("job-a", preview("a", 1)),
        ("job-a", progress("a", 2)),
        ("job-a", preview("a", 2)),
        ("job-a", progress("a", 3)),
        ("job-a", state("a", "succeeded")),
    ]
    assert conflate(batch) == [
        ("job-a", state("a", "running")),
        ("job-a", preview("a", 2)),
        ("job-a", progress("a", 3)),
        ("job-a", state("a", "succeeded")),
    ]


def test_other_jobs_groups_and_types_are_never_merged():
    batch = [
        ("job-a", progress("a", 1)),
        ("job-b", progress("b", 1)),
        ("jobs", progress("a", 1)),
        ("nodes", {"type": "node.status", "node": 1}),
        ("nodes", {"type": "node.status", "node": 1}),
    ]
    assert conflate(batch) == batch


def test_an_empty_batch():
    assert conflate([]) == []


def test_paced_messages_go_out_at_most_once_per_interval_the_newest_when_it_ends():
    pacer = Pacer(interval=0.25)
    assert pacer.admit([("job-a", progress("a", 1))], now=10.0) == [("job-a", progress("a", 1))]
    assert pacer.next_due() is None
    # Within the interval: held, each newer one replacing the last.
    assert pacer.admit([("job-a", progress("a", 2))], now=10.0625) == []
    assert pacer.admit([("job-a", progress("a", 3))], now=10.125) == []
    assert pacer.next_due() == 10.25
    assert pacer.admit([], now=10.1875) == []
    assert pacer.admit([], now=10.25) == [("job-a", progress("a", 3))]
    assert pacer.next_due() is None
    # The next one is paced from that send; one that arrives when a held one is due replaces it.
    assert pacer.admit([("job-a", progress("a", 4))], now=10.375) == []
    assert pacer.admit([("job-a", progress("a", 5))], now=10.5) == [("job-a", progress("a", 5))]
    # Once the interval has passed with nothing held, the next one goes out at once.
    assert pacer.admit([("job-a", progress("a", 6))], now=11.0) == [("job-a", progress("a", 6))]


def test_each_job_group_and_type_is_paced_on_its_own():
    pacer = Pacer(interval=0.1)
    first = [("job-a", progress("a", 1)), ("job-a", preview("a", 1)), ("job-b", progress("b", 1))]
    assert pacer.admit(first, now=5.0) == first
    assert pacer.admit([("job-b", progress("b", 2))], now=5.01) == []
    assert pacer.admit([("job-c", progress("c", 1))], now=5.02) == [("job-c", progress("c", 1))]


def test_other_messages_are_never_held_and_go_out_after_their_jobs_held_ones():
    pacer = Pacer(interval=0.25)
    pacer.admit([("job-a", progress("a", 1)), ("job-b", progress("b", 1))], now=1.0)
    assert pacer.admit([("job-a", progress("a", 9)), ("job-b", progress("b", 2))], now=1.0625) == []
    nodes = ("nodes", {"type": "node.status", "node": 1})
    assert pacer.admit([nodes, nodes], now=1.125) == [nodes, nodes]
    done = [("job-a", state("a", "succeeded")), ("jobs", state("a", "succeeded"))]
    assert pacer.admit(done, now=1.1875) == [("job-a", progress("a", 9)), *done]
    # Job b's progress is still held, and is due when its interval ends.
    assert pacer.admit([], now=1.25) == [("job-b", progress("b", 2))]


def test_quiet_jobs_are_forgotten():
    pacer = Pacer(interval=0.1)
    for n in range(50):
        pacer.admit([(f"job-{n}", progress(str(n), 1))], now=float(n))
    assert len(pacer.sent_at) == 1


class Counter:
    """Subscriber counts as Redis would give them, and the groups each call asked about."""

    def __init__(self, **counts: int) -> None:
        self.counts, self.calls = counts, []

    def __call__(self, groups: list[str]) -> dict[str, int]:
        self.calls.append(sorted(groups))
        return {group: self.counts.get(group, 0) for group in groups}


def test_the_audience_asks_about_a_group_once_per_recheck_and_only_for_groups_without_an_answer():
    count = Counter(watched=1)
    audience = Audience(count, recheck=0.25)

    assert audience.watched({"watched", "unwatched"}, now=1.0) == {"watched"}
    assert audience.watched({"watched", "unwatched"}, now=1.2) == {"watched"}
    assert audience.watched({"watched", "new"}, now=1.2) == {"watched"}
    assert count.calls == [["unwatched", "watched"], ["new"]]
    # Once an answer is `recheck` old it is asked for again: a viewer who joined is seen.
    count.counts["unwatched"] = 2
    assert audience.watched({"unwatched"}, now=1.25) == {"unwatched"}
    assert count.calls[-1] == ["unwatched"]


def test_a_sender_skips_a_group_only_while_redis_said_no_one_listens_less_than_recheck_ago():
    audience = Audience(Counter(watched=1), recheck=0.25)
    assert not audience.absent("unwatched", now=1.0)  # never asked: sent, and the publisher asks
    audience.watched({"watched", "unwatched"}, now=1.0)
    assert audience.absent("unwatched", now=1.1) and not audience.absent("watched", now=1.1)
    assert not audience.absent("unwatched", now=1.25)


def test_a_group_is_taken_as_watched_when_redis_cannot_say():
    def failing(groups: list[str]) -> dict[str, int]:
        raise redis.ConnectionError("Redis is restarting")

    audience = Audience(failing, recheck=0.25)
    assert audience.watched({"job-a"}, now=1.0) == {"job-a"}
    assert not audience.absent("job-a", now=1.1)


def test_answers_no_one_asks_about_again_are_forgotten():
    audience = Audience(Counter(), recheck=0.25)
    for n in range(50):
        audience.watched({f"job-{n}"}, now=float(n))
    assert list(audience.answers) == ["job-49"]


@pytest.fixture
def every_job_message():
    """What the process publishes to job groups, seen through a pattern subscription (which PUBSUB NUMSUB,
    and so the audience, does not count)."""
    pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*__group__job.*")
    layer = get_channel_layer()

    def received(seconds: float) -> list[tuple[str, str]]:
        messages, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if (item := pubsub.get_message(timeout=left)) is not None:
                message = layer.deserialize(item["data"])
                messages.append((item["channel"].decode().partition("__group__")[2], message["type"]))
        return messages

    yield received
    pubsub.close()


def test_progress_and_previews_of_a_job_no_one_watches_are_not_published_its_state_is(every_job_message):
    watched, unwatched = f"job.{uuid.uuid4()}", f"job.{uuid.uuid4()}"
    layer = get_channel_layer()

    async def main() -> tuple[list[tuple[str, str]], dict]:
        viewer = await layer.new_channel()
        await layer.group_add(watched, viewer)
        try:
            for group in (watched, unwatched):
                publish(group, progress(group, 1))
                publish(group, preview(group, 1))
                publish(group, state(group, "succeeded"))
            sent = await asyncio.to_thread(every_job_message, 1.0)
            return sent, await asyncio.wait_for(layer.receive(viewer), 5)
        finally:
            await layer.group_discard(watched, viewer)

    sent, first = asyncio.run(main())

    assert sorted(sent) == sorted(
        [(watched, "job.progress"), (watched, "job.preview"), (watched, "job.state"), (unwatched, "job.state")]
    )
    assert first["type"] == "job.progress"
