"""progress.wait_finished against the suite's real Redis: woken by the job's end, and the database (here a
counted callable) is asked once when the end is published, again only every second or at the deadline."""

from __future__ import annotations

import threading
import time
import uuid

from comfyrouter.redisconn import redis_client
from generations import progress


class Finished:
    """is_finished for wait_finished: counts the calls, reports True once `end()` was called."""

    def __init__(self) -> None:
        self.calls = 0
        self.ended = False

    def __call__(self) -> bool:
        self.calls += 1
        return self.ended

    def end(self, job_id) -> None:
        self.ended = True
        progress.notify_finished(job_id)


def test_woken_by_the_published_end_after_one_check():
    job_id, finished = uuid.uuid4(), Finished()
    threading.Timer(0.3, finished.end, args=(job_id,)).start()
    started = time.monotonic()
    assert progress.wait_finished(job_id, timeout=10, is_finished=finished)
    assert 0.25 < time.monotonic() - started < 1.0
    assert finished.calls == 1  # before waiting; the subscription's confirmation costs none


def test_an_end_already_written_needs_no_message():
    finished = Finished()
    finished.ended = True
    assert progress.wait_finished(uuid.uuid4(), timeout=10, is_finished=finished)
    assert finished.calls == 1


def test_a_lost_message_costs_at_most_a_second():
    finished = Finished()
    threading.Timer(0.2, setattr, args=(finished, "ended", True)).start()  # ended, never published
    started = time.monotonic()
    assert progress.wait_finished(uuid.uuid4(), timeout=10, is_finished=finished)
    assert 0.9 < time.monotonic() - started < 2.0
    assert finished.calls == 2


def test_the_deadline_passes_with_a_last_check():
    finished = Finished()
    started = time.monotonic()
    assert not progress.wait_finished(uuid.uuid4(), timeout=0.5, is_finished=finished)
    assert 0.45 < time.monotonic() - started < 1.0
    assert finished.calls == 2  # before waiting, and at the deadline


def test_a_subscription_lost_mid_wait_falls_back_to_the_database_at_once():
    finished = Finished()

    def end_unannounced() -> None:
        finished.ended = True  # written while the subscription is down: no message will come
        redis_client().client_kill_filter(_type="pubsub")

    threading.Timer(0.2, end_unannounced).start()
    started = time.monotonic()
    assert progress.wait_finished(uuid.uuid4(), timeout=10, is_finished=finished)
    assert time.monotonic() - started < 0.7  # no error, and not the second of a lost message
    assert finished.calls == 2


def test_a_late_end_of_an_earlier_wait_does_not_wake_the_next_one():
    """A thread's waits share one connection: an end published as a wait gives up, before it stops listening,
    reaches that connection unread, and must not pass for the next job's end."""
    first, calls = uuid.uuid4(), []

    def late(job_id=first) -> bool:
        calls.append(1)
        if len(calls) == 2:  # the check at the deadline: the job ends now, too late for this wait
            progress.notify_finished(job_id)
        return False

    assert not progress.wait_finished(first, timeout=0.3, is_finished=late)
    second, finished = uuid.uuid4(), Finished()
    threading.Timer(0.4, finished.end, args=(second,)).start()
    started = time.monotonic()
    assert progress.wait_finished(second, timeout=10, is_finished=finished)
    assert 0.35 < time.monotonic() - started < 1.0
    assert finished.calls == 1


def _woken_wait() -> float:
    """A wait whose job ends, published, 20 ms in: how long it took."""
    job_id, finished = uuid.uuid4(), Finished()
    threading.Timer(0.02, finished.end, args=(job_id,)).start()
    started = time.monotonic()
    assert progress.wait_finished(job_id, timeout=10, is_finished=finished)
    return time.monotonic() - started


def test_waits_in_one_thread_keep_one_subscription_and_its_connection():
    _woken_wait()
    kept = progress._subscription()
    connection = kept.connection
    for _ in range(5):
        _woken_wait()
    assert progress._subscription() is kept and kept.connection is connection


def test_a_kept_connection_that_dropped_between_waits_is_opened_again():
    _woken_wait()
    progress._subscription().connection.disconnect()  # as when Redis restarted while the thread was idle
    assert _woken_wait() < 0.5  # woken by the message, not by the database check a second later
