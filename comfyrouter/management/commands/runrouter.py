from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from comfyrouter.supervisor import NAME, ChildFailed, Supervisor


def default_concurrency() -> int:
    return settings.COMFYROUTER_WORKER_CONCURRENCY


def worker_names(processes: int) -> list[str]:
    return ["worker"] + [f"worker-{n}" for n in range(2, processes + 1)]


def process_commands(
    *, host: str, port: int, concurrency: int, var_dir: Path, processes: int = 1
) -> dict[str, list[str]]:
    python, celery = sys.executable, [sys.executable, "-m", "celery", "-A", "comfyrouter"]
    # Threads: an executing job spends its life waiting on a node's socket, so one slot per job in
    # flight costs a thread, not a process. Several processes: one is held to one core by the GIL.
    workers = {
        name: [
            *celery,
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}@%h",
        ]  # fmt: skip
        for name in worker_names(processes)
    }
    return {
        "web": [python, "-m", "daphne", "--bind", host, "--port", str(port), "comfyrouter.asgi:application"],
        **workers,
        "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule", str(var_dir / "celerybeat-schedule")],
    }


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "comfyrouter.settings")
    env["COMFYROUTER_VAR_DIR"] = str(settings.VAR_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def unapplied_migrations() -> int:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    connection.close()
    return len(plan)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def start_and_watch(supervisor: Supervisor, commands: dict[str, list[str]]) -> str | None:
    """Start Redis (when embedded) and the processes, then watch them; a failure's text, or None."""
    try:
        if settings.EMBEDDED_REDIS:
            supervisor.start_embedded_redis(settings.REDIS_URL)
        for name, argv in commands.items():
            if not supervisor.stopping.is_set():
                supervisor.spawn(name, argv)
    except ChildFailed as exc:
        return str(exc)
    crashed = supervisor.watch()
    return None if crashed is None else f"{crashed.name} {describe_exit(crashed.process.returncode)}"


class Command(BaseCommand):
    help = (
        "Run the whole system in the foreground: the embedded Redis (when REDIS_URL is unset), Daphne, "
        "a Celery worker and Celery beat. Run `migrate` first; stop with Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HOST, help="bind address")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--concurrency", type=int, default=default_concurrency(), help="threads per worker")
        parser.add_argument(
            "--workers", type=int, default=settings.COMFYROUTER_WORKER_PROCESSES, help="worker processes"
        )
        parser.add_argument("--stop-timeout", type=float, default=10.0, help="seconds before SIGKILL")

    def handle(self, *args: object, **options: object) -> None:
        if pending := unapplied_migrations():
            raise CommandError(f"{pending} unapplied migration(s): run `python manage.py migrate` first")
        commands = process_commands(
            host=options["host"],
            port=options["port"],
            concurrency=options["concurrency"],
            processes=options["workers"],
            var_dir=settings.VAR_DIR,
        )
        supervisor = Supervisor(env=child_env(), stop_timeout=options["stop_timeout"])
        supervisor.handle_signals()
        try:
            failure = start_and_watch(supervisor, commands)
            if failure:
                supervisor.log(NAME, f"{failure}; stopping the rest")
        finally:
            supervisor.stop_all(last=[child for child in supervisor.children if child.name == "redis"])
        if failure:
            raise CommandError(f"stopped because {failure}")
        supervisor.log(NAME, "all processes stopped")
