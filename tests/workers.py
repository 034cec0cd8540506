"""Real Celery worker and beat processes for integration tests, on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def test_database_url() -> str:
    """A DATABASE_URL naming the database the tests use right now (pytest-django's test DB)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = f"{db['USER']}:{db['PASSWORD']}@" if db["USER"] else ""
    return f"postgres://{auth}{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def process_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1"}
    env.update(overrides)
    return env


class CeleryProcess:
    """`celery worker` or `celery beat` as a child process with its output kept for assertions."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.args = [sys.executable, "-m", "celery", "-A", "comfyrouter", *args]
        self.env = env
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    def start(self, ready_marker: str = "ready.", timeout: float = 30.0) -> CeleryProcess:
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(ready_marker, timeout=timeout)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, marker: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(marker in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.args[4:]} not ready:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: no chance to ack, requeue or clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


def start_worker(env: dict[str, str], *, concurrency: int = 8) -> CeleryProcess:
    args = ["worker", "--pool", "threads", "--concurrency", str(concurrency), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"test-{os.getpid()}@%h"]  # fmt: skip
    return CeleryProcess(*args, env=env).start()
