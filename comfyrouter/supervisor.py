"""The process supervisor behind `runrouter`: start the system's processes, prefix their logs, stop them all.

Each child leads its own session, so a stop reaches the whole tree (Celery's pool processes included)
through its process group, and a Ctrl-C in the terminal reaches only the supervisor, which then stops
the children in order: everything else first, Redis last.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from comfyrouter import embedded_redis

NAME = "runrouter"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only


class ChildFailed(Exception):
    """A child could not start, or exited while the system was meant to be running."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    pump: threading.Thread

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session: the child leads its own process group


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs; zombies don't count (they wait for a reaper)."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return any((stat := proc_stat(pid)) and stat[2] == pgid and stat[0] not in "ZX" for pid in all_pids())


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def become_subreaper() -> bool:
    """Orphaned grandchildren re-parent to us, so they are reaped even where PID 1 never reaps."""
    return bool(_prctl) and _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def terminate_with_parent() -> None:
    """In a child before exec: get SIGTERM when the supervisor dies, even by SIGKILL."""
    if _prctl:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def reap_orphans(known: Iterable[int]) -> None:
    skip, me = set(known), os.getpid()
    for pid in all_pids() if os.path.isdir("/proc") else []:
        stat = proc_stat(pid)
        if pid not in skip and stat and stat[1] == me and stat[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


class Supervisor:
    def __init__(self, *, env: Mapping[str, str], stop_timeout: float = 10.0, out: IO[str] | None = None):
        self.env = dict(env)
        self.stop_timeout = stop_timeout
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.force = False
        self.subreaper = False
        self._lock = threading.RLock()  # the signal handler logs too, maybe inside log()

    def log(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name} | {line}\n")
            self.out.flush()

    def handle_signals(self) -> None:
        # SIGHUP too: a closed terminal must not leave the children, each in its own session, running.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.subreaper = become_subreaper()

    def _on_signal(self, signum: int, frame: object) -> None:
        # A second Ctrl-C while stopping means: don't wait for graceful shutdowns any more.
        self.force = self.stopping.is_set()
        if not self.stopping.is_set():
            self.log(NAME, f"{signal.Signals(signum).name} received; stopping")
        self.stopping.set()

    def spawn(self, name: str, argv: Sequence[str]) -> Child:
        process = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=terminate_with_parent,  # only prctl runs between fork and exec: thread-safe
        )
        pump = threading.Thread(target=self._pump, args=(name, process.stdout), daemon=True)
        pump.start()
        self.children.append(Child(name, process, pump))
        self.log(NAME, f"started {name} (pid {process.pid})")
        return self.children[-1]

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.log(name, raw.decode(errors="replace").rstrip("\r\n"))
        stream.close()

    def start_embedded_redis(self, url: str, *, timeout: float = 15.0) -> Child:
        if embedded_redis.is_up(url):
            raise ChildFailed(f"a Redis server already answers on {url}: another runrouter on this var dir?")
        socket = embedded_redis.prepare_socket(url)
        child = self.spawn("redis", embedded_redis.server_command(socket, loglevel="notice"))
        try:
            embedded_redis.wait_until_up(url, child.process, timeout=timeout)
        except RuntimeError as exc:
            raise ChildFailed(str(exc)) from None
        return child

    def watch(self) -> Child | None:
        """Block until a stop is requested (None) or a child exits (that child)."""
        while not self.stopping.wait(0.2):
            for child in self.children:
                if child.process.poll() is not None:
                    return child
        return None

    def stop_all(self, *, last: Sequence[Child] = ()) -> None:
        self.stopping.set()
        self._stop([child for child in self.children if child not in last])
        self._stop(list(last))
        self._reap_orphans()

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            signal_group(child.pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in children:
            if not self._wait_stopped(child, deadline):
                self.log(NAME, f"{child.name} did not stop in time; killing it")
                signal_group(child.pgid, signal.SIGKILL)
                self._wait_stopped(child, time.monotonic() + 5, interruptible=False)
            child.pump.join(timeout=2)
            self.log(NAME, f"{child.name} stopped")

    def _wait_stopped(self, child: Child, deadline: float, *, interruptible: bool = True) -> bool:
        """Wait until the child and its whole group are gone; False at the deadline or on a forced stop."""
        while time.monotonic() < deadline and not (interruptible and self.force):
            if child.process.poll() is not None:
                self._reap_orphans()
                if not group_alive(child.pgid):
                    return True
            time.sleep(0.05)
        return False

    def _reap_orphans(self) -> None:
        if self.subreaper:
            reap_orphans(child.process.pid for child in self.children)
