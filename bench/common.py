"""Shared benchmark setup: the real router (`manage.py runrouter`) in a temp var dir, fake nodes in their
own processes, the CPU of a process tree from /proc, and small statistics helpers.

Also a tiny fake-node host, `python -m bench.common fakes --count K [--step-time S]`: K fake ComfyUIs in one
process (one event loop thread each); prints `PORTS p1 p2 ...` once they listen.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
ADMIN = "admin"
ADMIN_PASSWORD = "bench-admin-password"


# -- statistics -------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): the value below which `pct`% of samples fall."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else math.nan,
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    # Numbers right-aligned, text left-aligned.
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"nproc {os.cpu_count()}, Python {sys.version.split()[0]}, load avg {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, DB {'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'SQLite (embedded)'}, "
        f"Redis {'REDIS_URL' if os.environ.get('REDIS_URL') else 'embedded (unix socket)'}"
    )


# -- processes and CPU --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """`root` and every live process below it (by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds; 0 when it is gone."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0


# The roles of the processes Router.cpu() reports, Redis last.
ROLES = ("web", "worker", "beat", "supervisor", "redis")


def role_of(name: str) -> str:
    """The role of a runrouter process: "worker-2" is a worker."""
    base, _, number = name.rpartition("-")
    return base if base and number.isdigit() else name


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of every process of a tree, by pid (exited processes are not included)."""
    return {pid: cpu_seconds(pid) for pid in descendants(root)}


# -- fake nodes ---------------------------------------------------------------------------------------------


# The fakes stand for GPU servers on other machines; here they share the router's two cores. Pillow's PNG writer is
# the largest part of their CPU per prompt: the benches use the fast one (same image and text chunks) by default.
PNG_HELP = "the fakes' output PNGs: fast (the same image, 0.15 ms) or exact (Pillow's bytes, as ComfyUI's, 3 ms)"


@dataclass
class FakeFleet:
    """Fake ComfyUI nodes in separate processes (`per_process` fakes in each)."""

    count: int
    per_process: int = 1
    step_time: float = 0.0
    node_time: float = 0.0
    processes: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def start(self) -> FakeFleet:
        remaining = self.count
        while remaining:
            k = min(self.per_process, remaining)
            argv = [PYTHON, "-m", "bench.common", "fakes", "--count", str(k), "--step-time", str(self.step_time),
                    "--node-time", str(self.node_time)]  # fmt: skip
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
            self.processes.append(proc)
            remaining -= k
        for proc in self.processes:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line.startswith("PORTS"):
                self.stop()
                raise RuntimeError(f"fake host did not start: {line!r}")
            self.ports.extend(int(p) for p in line.split()[1:])
        return self

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def configure(self, **knobs: object) -> None:
        for url in self.urls:
            httpx.post(f"{url}/_fake/configure", json=knobs, timeout=10).raise_for_status()

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(proc.pid) for proc in self.processes)

    def stop(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> FakeFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_fakes(count: int, step_time: float, node_time: float) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fake_comfyui import FakeComfyUI

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fakes = [FakeComfyUI(step_time=step_time, node_time=node_time).start() for _ in range(count)]
    print("PORTS " + " ".join(str(fake.port) for fake in fakes), flush=True)
    stop.wait()
    for fake in fakes:
        fake.stop()


def busy_intervals(url: str) -> list[tuple[float, float]]:
    """(start, end) in seconds of every prompt a fake ran, from its history's execution_* timestamps."""
    history = httpx.get(f"{url}/history", timeout=30).json()
    spans = []
    for entry in history.values():
        stamps = {name: data.get("timestamp") for name, data in entry.get("status", {}).get("messages", [])}
        if stamps.get("execution_start") and stamps.get("execution_success"):
            spans.append((stamps["execution_start"] / 1000, stamps["execution_success"] / 1000))
    return spans


# -- the router ---------------------------------------------------------------------------------------------


@dataclass
class Router:
    """`manage.py runrouter` on a fresh var dir, with an admin user and an API key."""

    env_overrides: dict[str, str] = field(default_factory=dict)
    concurrency: int | None = None
    keep: bool = False
    port: int = 0
    var_dir: Path | None = None
    process: subprocess.Popen | None = None
    api_key: str = ""
    roles: dict[str, int] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            COMFYROUTER_VAR_DIR=str(self.var_dir), PORT=str(self.port), COMFYROUTER_ADMIN_PASSWORD=ADMIN_PASSWORD,
            LOG_LEVEL=env.get("LOG_LEVEL", "WARNING"), PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="comfyrouter.settings",
        )  # fmt: skip
        env.update(self.env_overrides)
        return env

    def manage(self, *args: str) -> str:
        argv = [PYTHON, "manage.py", *args]
        done = subprocess.run(argv, cwd=ROOT, env=self.env(), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    def start(self, timeout: float = 60.0) -> Router:
        # Short path: the embedded Redis listens on a unix socket under it (108-byte limit).
        self.var_dir = Path(tempfile.mkdtemp(prefix="crb-", dir="/tmp"))
        self.port = free_port()
        self.manage("migrate", "--noinput")
        self.manage("ensureadmin")
        self.api_key = self.manage("createapikey", ADMIN, "--name", "bench").splitlines()[-1]
        argv = [PYTHON, "manage.py", "runrouter", "--port", str(self.port)]
        if self.concurrency:
            argv += ["--concurrency", str(self.concurrency)]
        self.log_path = self.var_dir / "runrouter.log"
        log = self.log_path.open("w")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"runrouter exited:\n{self.log_tail()}")
            text = self.log_path.read_text() if self.log_path else ""
            worker_ready = "ready." in text
            try:
                up = httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up and worker_ready and "started beat" in text:
                self.roles = self._find_roles(text)
                return
            time.sleep(0.2)
        raise RuntimeError(f"runrouter not ready in {timeout} s:\n{self.log_tail()}")

    @staticmethod
    def _find_roles(text: str) -> dict[str, int]:
        roles = {}
        for line in text.splitlines():
            if line.startswith("runrouter | started "):
                name, pid = line.removeprefix("runrouter | started ").split(" (pid ")
                roles[name] = int(pid.rstrip(")"))
        return roles

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:]) if self.log_path else ""

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by role: web, worker (every worker process, with pool children), beat, redis,
        supervisor."""
        assert self.process is not None
        out = {"supervisor": cpu_seconds(self.process.pid)}
        for name, pid in self.roles.items():
            role = role_of(name)
            out[role] = out.get(role, 0.0) + sum(tree_cpu(pid).values())
        return out

    @contextlib.contextmanager
    def profiled(
        self, out_dir: str | None, roles: Sequence[str] = ("web", "worker"), *, wall: bool = False
    ) -> Iterator[None]:
        """With `out_dir`, sample each process of `roles` (pool children included) with py-spy into
        <process>.txt (web.txt, worker.txt, worker-2.txt ...; collapsed stacks): only threads holding the GIL
        (a fair picture of Python CPU), or with `wall` every thread, waiting ones included (where the time
        goes).

        py-spy is not a project dependency: `.venv/bin/pip install py-spy` first.
        """
        if not out_dir:
            yield
            return
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        spies = []
        for name, pid in self.roles.items():
            if role_of(name) not in roles:
                continue
            argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                    "--subprocesses", "--idle" if wall else "--gil", "--rate", "500", "--format", "raw",
                    "-o", f"{out_dir}/{name}.txt"]  # fmt: skip
            spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait(30)

    def pids(self) -> dict[str, list[int]]:
        return {role: descendants(pid) for role, pid in self.roles.items()}

    def admin_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(ADMIN, ADMIN_PASSWORD), timeout=30)

    def client(self, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kwargs)

    def add_nodes(self, urls: Sequence[str], capacity: int = 2) -> list[int]:
        ids = []
        with self.admin_client() as admin:
            for index, url in enumerate(urls):
                body = {"name": f"fake-{index:02d}", "base_url": url, "capacity": capacity}
                answer = admin.post("/api/nodes/", json=body)
                if answer.status_code != 201:
                    raise RuntimeError(f"POST /api/nodes/ {answer.status_code}: {answer.text}")
                ids.append(answer.json()["id"])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                nodes = admin.get("/api/nodes/").json()
                if all(node["status"] in ("idle", "busy") for node in nodes):
                    return ids
                time.sleep(0.2)
        raise RuntimeError(f"nodes not idle: {nodes}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.var_dir is not None and not self.keep:
            shutil.rmtree(self.var_dir, ignore_errors=True)

    def __enter__(self) -> Router:
        try:
            return self.start()
        except BaseException:
            self.stop()  # a failed start leaves neither processes nor its var dir behind
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def django_setup(router: Router) -> None:
    """Use the router's database from this process (for rendering prompts and reading job timestamps)."""
    os.environ.update({k: v for k, v in router.env().items() if k.startswith(("COMFYROUTER_", "DJANGO_"))})
    if router.env().get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = router.env()["DATABASE_URL"]
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def job_phases(ids: Sequence[str]) -> list[list[object]]:
    """p50/p95/mean ms of created->assigned->started->finished over these jobs, from their rows."""
    from generations.models import Job

    names = ["created_at", "assigned_at", "started_at", "finished_at"]
    rows = list(Job.objects.filter(id__in=ids).values_list(*names))
    out = []
    for i in range(len(names) - 1):
        spans = [(r[i + 1] - r[i]).total_seconds() * 1000 for r in rows if r[i] and r[i + 1]]
        if spans:
            s = summary(spans)
            label = f"{names[i].removesuffix('_at')}->{names[i + 1].removesuffix('_at')}"
            out.append([label, s["p50"], s["p95"], s["mean"], s["max"]])
    return out


PROJECT = ("generations/", "nodes/", "comfyrouter/", "workflows_app/")
# Leaf frames where a thread waits rather than computes: py-spy cannot always tell, so they are dropped.
WAITING = ("select (selectors", "poll (kombu", "Condition.wait", "_wait_for_tstate_lock", "_worker (concurrent",
           "_read_from_socket", "recv_events", "_recv (billiard", "untilConcludes", "time.sleep")  # fmt: skip


def profile_top(path: str, top: int, cpu_ms: float) -> None:
    """Summarise py-spy collapsed stacks (waiting leaves dropped): project functions by inclusive share, leaf
    packages and leaf functions; with `cpu_ms` (the process's measured CPU ms per job) shares become ms/job."""
    inclusive: dict[str, int] = {}
    leaf_pkg: dict[str, int] = {}
    leaf_fn: dict[str, int] = {}
    total = waiting = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if any(w in frames[-1] for w in WAITING):
            waiting += n
            continue
        total += n
        for frame in set(frames):
            if any(f"({pkg}" in frame for pkg in PROJECT):
                inclusive[frame] = inclusive.get(frame, 0) + n
        leaf = frames[-1]
        where = leaf[leaf.rfind("(") + 1 :].split("/")[0].split(".py")[0]
        leaf_pkg[where] = leaf_pkg.get(where, 0) + n
        leaf_fn[leaf] = leaf_fn.get(leaf, 0) + n
    print(f"{path}: {total} computing samples ({waiting} waiting ones dropped)")
    for title, data in (("project functions, inclusive", inclusive), ("leaf frames by package", leaf_pkg),
                        ("leaf functions (self)", leaf_fn)):  # fmt: skip
        ranked = sorted(data.items(), key=lambda x: -x[1])[:top]
        rows = [[name[:100], n * 100 / total, n * cpu_ms / total] for name, n in ranked]
        print(f"\n{title}")
        print(table(["frame", "% samples", "est. CPU ms/job"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description="bench helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    fakes = sub.add_parser("fakes", help="serve K fake ComfyUIs in this process")
    fakes.add_argument("--count", type=int, default=1)
    fakes.add_argument("--step-time", type=float, default=0.0)
    fakes.add_argument("--node-time", type=float, default=0.0)
    spy = sub.add_parser("profile-top", help="summarise a py-spy raw profile (--profile DIR/<role>.txt)")
    spy.add_argument("path")
    spy.add_argument("--top", type=int, default=25)
    spy.add_argument("--cpu-ms", type=float, default=0.0, help="the process's measured CPU ms per job")
    args = parser.parse_args()
    if args.command == "fakes":
        serve_fakes(args.count, args.step_time, args.node_time)
    elif args.command == "profile-top":
        profile_top(args.path, args.top, args.cpu_ms)


if __name__ == "__main__":
    main()
