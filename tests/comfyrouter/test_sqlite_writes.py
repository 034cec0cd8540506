"""The embedded SQLite backend: writers queue on the process's lock and the file lock, and give both back."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connections, transaction

from comfyrouter.sqlite.base import FifoLock, WriteLock, write_lock

ALIAS = "sqlite_write_lock"


@pytest.fixture
def db_alias(tmp_path, django_db_blocker) -> Iterator[str]:
    """A scratch database on the router's SQLite backend, whatever backend the tests use."""
    options = {"timeout": 5, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    config = {"ENGINE": "comfyrouter.sqlite", "NAME": str(tmp_path / "scratch.sqlite3"), "OPTIONS": options}
    connections.settings[ALIAS] = connections.configure_settings({"default": {}, ALIAS: config})[ALIAS]
    with django_db_blocker.unblock():
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            cursor.execute("INSERT INTO counter VALUES (1, 0)")
        yield ALIAS
        connections[ALIAS].close()
    del connections[ALIAS]
    del connections.settings[ALIAS]


def lock_of(alias: str) -> WriteLock:
    return write_lock(os.path.abspath(connections[alias].settings_dict["NAME"]))


def count(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT n FROM counter WHERE id = 1")
        return cursor.fetchone()[0]


def increment(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("UPDATE counter SET n = n + 1 WHERE id = 1")


def test_a_transaction_holds_the_write_lock_until_it_commits(db_alias):
    with transaction.atomic(using=db_alias):
        increment(db_alias)
        assert lock_of(db_alias).threads.locked()

    assert not lock_of(db_alias).threads.locked()
    assert count(db_alias) == 1


def test_a_rolled_back_transaction_gives_the_lock_back(db_alias):
    with pytest.raises(RuntimeError), transaction.atomic(using=db_alias):
        increment(db_alias)
        raise RuntimeError("the transaction fails")

    assert not lock_of(db_alias).threads.locked()
    assert count(db_alias) == 0


@pytest.mark.parametrize("holder", ["another thread", "another process"])
def test_a_lone_write_waits_for_the_lock_and_reads_do_not(db_alias, holder):
    done = threading.Event()

    def write() -> None:
        increment(db_alias)
        connections[db_alias].close()
        done.set()

    lock = lock_of(db_alias)
    if holder == "another thread":
        lock.threads.acquire()
        release = lock.threads.release
    else:  # a file lock taken through another open file, as another process's would be
        fd = os.open(lock.path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        release = lambda: os.close(fd)  # noqa: E731 - closing the file drops its lock
    assert count(db_alias) == 0  # reads never wait
    writer = threading.Thread(target=write)
    writer.start()
    assert not done.wait(0.3)

    release()
    assert done.wait(5)
    writer.join()
    assert count(db_alias) == 1


def test_many_threads_writing_at_once_lose_no_write(db_alias):
    def work() -> None:
        for _ in range(25):
            with transaction.atomic(using=db_alias):
                increment(db_alias)
            increment(db_alias)  # and one in autocommit
        connections[db_alias].close()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert count(db_alias) == 16 * 25 * 2
    assert not lock_of(db_alias).threads.locked()


def test_the_thread_lock_goes_to_waiting_writers_in_the_order_they_came():
    lock, order = FifoLock(), []

    def write(n: int) -> None:
        assert lock.acquire(timeout=10)
        order.append(n)
        lock.release()

    lock.acquire()
    threads = []
    for n in range(8):
        threads.append(threading.Thread(target=write, args=(n,)))
        threads[-1].start()
        while len(lock.waiters) <= n:  # queued before the next one comes
            time.sleep(0.001)
    lock.release()
    for thread in threads:
        thread.join(10)

    assert order == list(range(8)) and not lock.locked()


def test_a_writer_that_waited_too_long_leaves_the_queue():
    lock = FifoLock()
    lock.acquire()
    started = time.monotonic()
    assert not lock.acquire(timeout=0.05) and time.monotonic() - started >= 0.05
    assert not lock.waiters
    lock.release()
    assert not lock.locked() and lock.acquire(timeout=0)


def test_placeholders_are_rewritten_as_django_does_and_each_text_once(db_alias):
    from comfyrouter.sqlite.base import qmark

    qmark.cache_clear()
    with connections[db_alias].cursor() as cursor:
        for n in (1, 2, 3):
            cursor.execute("UPDATE counter SET n = %s WHERE id = %s AND '50%%' LIKE '%%'", [n, 1])
        cursor.execute("SELECT n, '%%' FROM counter WHERE id = %s", [1])
        assert cursor.fetchone() == (3, "%")
    assert qmark.cache_info().misses == 2 and qmark.cache_info().hits == 2
