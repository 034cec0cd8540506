from __future__ import annotations

from celery import shared_task
from celery.worker import state as worker_state
from django.db import close_old_connections

from generations import cache, executor, services, webhooks


# Not acks_late: with Redis an unacked message comes back only after the visibility timeout (hours),
# and a worker holding one when Redis restarts stops consuming for good (kombu 5.7 restores unacked
# messages over the closed connection). The sweep's reaper re-runs a job whose executor died instead.
@shared_task(ignore_result=True)
def execute_job(job_id: str, handed_over: str = "") -> None:
    """Execute the job, then each job that a job's end handed to this thread, until the worker stops."""
    while True:
        with services.keeping_a_job() as kept:
            executor.execute(job_id, handed_over=handed_over)
        if not kept:
            return
        job_id, handed_over = kept[0]
        if worker_state.should_stop is not None or worker_state.should_terminate is not None:
            execute_job.delay(job_id, handed_over)  # a stopping worker takes no more: another one will
            return
        close_old_connections()  # between jobs as between tasks (comfyrouter/celery.py)


@shared_task(ignore_result=True)
def sweep() -> None:
    """Beat: expire, reap and recount, then dispatch; a lost message delays a job, never strands it."""
    services.jobs_expire_queued()
    for job_id in services.jobs_reap():
        execute_job.delay(str(job_id))
    services.nodes_reconcile_slots()
    services.dispatch_now()
    for job_id in webhooks.due():
        send_webhook.delay(str(job_id))


@shared_task(ignore_result=True)
def evict_cache() -> None:
    """Beat: drop least-recently-used input files until the cache fits COMFYROUTER_CACHE_MAX_BYTES."""
    cache.cache_evict()


@shared_task(ignore_result=True)
def purge_jobs() -> None:
    services.jobs_purge()


# Retries are scheduled in the job row (webhook_next_at) and sent by the sweep, not held by a
# worker as countdown messages: those die with a worker or a Redis restart.
@shared_task(ignore_result=True)
def send_webhook(job_id: str) -> None:
    webhooks.deliver(job_id)
