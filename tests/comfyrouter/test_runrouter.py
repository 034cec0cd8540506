"""`runrouter` as a real process tree: health, prefixed logs, and a stop that leaves nothing behind.

These tests use their own var dir and SQLite file (never the database DATABASE_URL names), and the
Redis server REDIS_URL names (on database 15) when it is set, the embedded one otherwise; they need no
django_db fixture.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from comfyrouter import embedded_redis
from comfyrouter.supervisor import Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MANAGE = str(settings.BASE_DIR / "manage.py")
EMBEDDED = not os.environ.get("REDIS_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def own_redis_database(url: str) -> str:
    """The same server on database 15: the other tests' workers must not take this system's tasks."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(path="/15").geturl() if parts.scheme in {"redis", "rediss"} else url


def router_env(var_dir: Path, port: int = 0) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env.update(COMFYROUTER_VAR_DIR=str(var_dir), PORT=str(port or 8000), COMFYROUTER_ADMIN_PASSWORD="x" * 12)
    if not EMBEDDED:
        env["REDIS_URL"] = own_redis_database(env["REDIS_URL"])
    return env


def parents() -> dict[int, tuple[int, str]]:
    """pid → (ppid, state) of every process, read from /proc."""
    table = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, ppid = raw[raw.rindex(")") + 2 :].split()[:2]
        table[int(entry)] = (int(ppid), state)
    return table


def descendants(root: int) -> set[int]:
    table, found = parents(), {root}
    while new := {pid for pid, (ppid, _) in table.items() if ppid in found} - found:
        found |= new
    return found - {root}


def alive(pids: set[int]) -> set[int]:
    table = parents()
    return {pid for pid in pids if pid in table and table[pid][1] not in "ZX"}


@dataclass
class Router:
    process: subprocess.Popen
    port: int
    var_dir: Path
    lines: list[str] = field(default_factory=list)
    tree: set[int] = field(default_factory=set)

    def read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output, re.MULTILINE):
            assert self.process.poll() is None, f"runrouter exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s:\n{self.output}"
            time.sleep(0.1)

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
                return json.load(response) if response.status == 200 else None
        except OSError:
            return None

    def wait_healthy(self, *, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while (body := self.health()) is None:
            assert self.process.poll() is None, f"runrouter exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"/health not 200 within {timeout} s:\n{self.output}"
            time.sleep(0.2)
        return body


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("router")
    for command in (["migrate", "--noinput", "-v0"], ["ensureadmin"]):
        run = [sys.executable, MANAGE, *command]
        subprocess.run(run, env=router_env(path), check=True, capture_output=True, timeout=120)
    return path


@pytest.fixture
def router(var_dir: Path) -> Iterator[Router]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, MANAGE, "runrouter", "--concurrency", "1"],
        env=router_env(var_dir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = Router(process, port, var_dir)
    threading.Thread(target=started.read, daemon=True).start()
    yield started
    leftovers = started.tree | descendants(process.pid)
    process.kill()
    for pid in alive(leftovers):
        os.kill(pid, signal.SIGKILL)
    process.wait()


def wait_until_running(router: Router) -> set[int]:
    """Wait for a healthy system with every process ready; the supervisor's descendants."""
    body = router.wait_healthy()
    assert body["db"] == "ok" and body["redis"] == "ok"
    router.wait_for(r"^worker \| .*\S+@\S+ ready\.")
    router.wait_for(r"^beat \| .*beat: Starting")
    router.tree = descendants(router.process.pid)
    return router.tree


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_every_process_and_redis_last(router, signum):
    tree = wait_until_running(router)
    assert len(tree) >= (4 if EMBEDDED else 3)  # web, worker (a threads pool), beat (+ redis)

    router.process.send_signal(signum)

    assert router.process.wait(timeout=60) == 0, router.output
    assert alive(tree) == set()
    assert re.search(r"^web \| .*Listening on TCP address", router.output, re.MULTILINE)
    if EMBEDDED:
        assert re.search(r"^redis \| .*ready to accept connections", router.output, re.MULTILINE)
        assert router.output.rindex("redis stopped") > router.output.rindex("worker stopped")
        url = f"unix://{router.var_dir / 'redis.sock'}"
        assert not embedded_redis.is_up(url) and not (router.var_dir / "redis.sock").exists()


def test_a_crashed_child_stops_the_rest_and_fails_loudly(router):
    tree = wait_until_running(router)
    beat = next(pid for pid in tree if "beat" in Path(f"/proc/{pid}/cmdline").read_text())

    os.kill(beat, signal.SIGKILL)

    assert router.process.wait(timeout=60) == 1
    assert "beat was killed by SIGKILL; stopping the rest" in router.output
    assert alive(tree) == set()


def test_a_supervisor_killed_outright_takes_its_children_with_it(router):
    tree = wait_until_running(router)

    router.process.kill()

    deadline = time.monotonic() + 30
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(tree) == set()


def test_a_process_group_that_ignores_sigterm_is_killed_after_the_timeout():
    out = io.StringIO()
    supervisor = Supervisor(env=os.environ, stop_timeout=0.5, out=out)
    child = supervisor.spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & echo started; wait"])
    deadline = time.monotonic() + 10
    while "stubborn | started" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = descendants(child.process.pid) | {child.process.pid}
    assert len(tree) == 2

    supervisor.stop_all()

    assert alive(tree) == set()
    assert "stubborn did not stop in time; killing it" in out.getvalue()
