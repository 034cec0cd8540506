"""The publisher's conflation: only superseded progress and previews are dropped, order is kept."""

from comfyrouter.realtime import conflate


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
