"""The publisher's conflation and pacing: only superseded progress and previews are dropped, order is kept."""

from comfyrouter.realtime import Pacer, conflate


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
