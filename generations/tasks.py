from __future__ import annotations

from celery import shared_task

from generations import cache, executor, services, webhooks


# Not acks_late: with Redis an unacked message comes back only after the visibility timeout (hours),
# and a worker holding one when Redis restarts stops consuming for good (kombu 5.7 restores unacked
# messages over the closed connection). The sweep's reaper re-runs a job whose executor died instead.
@shared_task(ignore_result=True)
def execute_job(job_id: str, handed_over: str = "") -> None:
    executor.execute(job_id, handed_over=handed_over)


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
