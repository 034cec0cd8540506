"""Django's SQLite backend, with writers queueing on locks that wake them at once, not in SQLite.

SQLite has one writer at a time. A connection that finds the database locked sleeps in SQLite's busy
handler for 1, 2, 5, 10 ... up to 100 ms between tries, however soon the lock is free: with dozens of
executor threads in the workers, most of a job's time went to those sleeps. Here a writer first takes
its process's write lock (a thread lock), then a file lock beside the database that the processes
(web, workers, beat) share, and only then writes: a transaction's BEGIN IMMEDIATE, or a lone write in
autocommit. Both are given back at COMMIT or ROLLBACK, so the next writer starts the moment the last
one ends. SQLite's own lock and busy handler remain for any other program writing to the file.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import functools
import os
import threading
import time
from collections.abc import Iterator

from django.db import OperationalError
from django.db.backends.sqlite3 import base

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
ADVICE = " (SQLite has one writer at a time: for this load, set DATABASE_URL to a PostgreSQL database)"
# Waiting for another process's writer: tries this often at most (its transactions take about a ms).
FILE_LOCK_POLL_SECONDS = 0.002


def is_write(query: str) -> bool:
    return query.lstrip()[:7].upper().startswith(WRITES)


class FifoLock:
    """A thread lock taken in the order threads asked for it.

    threading.Lock goes to whichever thread runs first when it is free, so under load a writer could be
    overtaken again and again until its timeout (seen: 20 s while hundreds of later requests wrote). Here
    a release hands the lock straight to the longest waiter.
    """

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.waiters: collections.deque[threading.Lock] = collections.deque()
        self.held = False

    def acquire(self, timeout: float = -1) -> bool:
        with self.guard:
            if not self.held:
                self.held = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self.waiters.append(turn)
        if turn.acquire(timeout=timeout):
            return True  # handed over by release()
        with self.guard:
            if turn in self.waiters:
                self.waiters.remove(turn)
                return False
        return True  # handed over just as the wait timed out

    def release(self) -> None:
        with self.guard:
            if self.waiters:
                self.waiters.popleft().release()  # still held: now by the first waiter
            else:
                self.held = False

    def locked(self) -> bool:
        return self.held


class WriteLock:
    """One database file's writer lock: a thread lock in this process, then a file lock between processes."""

    def __init__(self, path: str | None) -> None:
        self.path = path  # None: an in-memory database, only this process writes to it
        self.threads = FifoLock()
        self.fd: int | None = None
        self.pid = 0

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self.threads.acquire(timeout=timeout):
            raise OperationalError(
                f"database is locked: this process's writers ahead of this one held it for over {timeout:g} s"
                f"{ADVICE}"
            )
        try:
            self._lock_file(deadline, timeout)
        except BaseException:
            self.threads.release()
            raise

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        try:
            if self.path is not None:
                fcntl.flock(self._fd(), fcntl.LOCK_UN)
        finally:
            self.threads.release()

    def _lock_file(self, deadline: float, timeout: float) -> None:
        if self.path is None:
            return
        fd, wait = self._fd(), 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OperationalError(
                        f"database is locked: another process wrote to it for over {timeout:g} s{ADVICE}"
                    ) from None
                time.sleep(wait)
                wait = min(wait * 2, FILE_LOCK_POLL_SECONDS)

    def _fd(self) -> int:
        assert self.path is not None
        # A process forked with the file open must not share the parent's lock: flock is per open file.
        if self.fd is None or self.pid != os.getpid():
            self.fd, self.pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        return self.fd


_locks: dict[str | None, WriteLock] = {}
_locks_guard = threading.Lock()


def write_lock(database: str | None) -> WriteLock:
    """The one lock of a database file in this process (None: in memory)."""
    with _locks_guard:
        if database not in _locks:
            _locks[database] = WriteLock(f"{database}.writelock" if database else None)
        return _locks[database]


@functools.lru_cache(maxsize=1024)
def qmark(query: str) -> str:
    """`query` with Django's "format" placeholders (%s, %%) in SQLite's "qmark" style, as Django writes it."""
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class Cursor(base.SQLiteCursorWrapper):
    """A lone write outside a transaction takes the write lock too, for as long as it runs."""

    def execute(self, query, params=None):
        with self._lock_for(query):
            return super().execute(query, params)

    def executemany(self, query, param_list):
        with self._lock_for(query):
            return super().executemany(query, param_list)

    def convert_query(self, query, *, param_names=None):
        # Django rewrites every query's %s placeholders to SQLite's ? with a regex: 15 us for a job's SELECT.
        # The ORM sends the same few query texts again and again: each is rewritten once.
        return qmark(query) if param_names is None else super().convert_query(query, param_names=param_names)

    def _lock_for(self, query: str) -> contextlib.AbstractContextManager:
        if self.connection.in_transaction or not is_write(query):
            return contextlib.nullcontext()  # a read, or a transaction that holds the lock already
        return self.connection.lock.held(self.connection.lock_timeout)


class Connection(base.Database.Connection):
    """sqlite3's connection, carrying its database's write lock."""

    lock: WriteLock
    lock_timeout: float


class DatabaseWrapper(base.DatabaseWrapper):
    holds_write_lock = False

    def get_connection_params(self):
        params = super().get_connection_params()
        params["factory"] = Connection
        return params

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        name = self.settings_dict["NAME"]
        connection.lock = write_lock(None if self.is_in_memory_db() else os.path.abspath(name))
        connection.lock_timeout = conn_params.get("timeout", 5.0)
        return connection

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=Cursor)

    def _start_transaction_under_autocommit(self):
        self.connection.lock.acquire(self.connection.lock_timeout)
        self.holds_write_lock = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_write_lock()

    def _release_write_lock(self):
        if self.holds_write_lock:
            self.holds_write_lock = False
            self.connection.lock.release()
