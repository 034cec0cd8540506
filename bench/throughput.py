"""Router throughput on a fleet of fake nodes.

    .venv/bin/python -m bench.throughput [--nodes 16] [--jobs 1000] [--per-process 4] [--workers 2]
                                         [--png fast|exact]

Phase 1, zero-time jobs: `--jobs` jobs submitted as fast as a concurrent client can (`wait: false`),
jobs/s completed from the first submit to the last job's finished_at.
Phase 2, `--job-ms` jobs on a saturated queue: the nodes are drained, the queue is filled, the nodes are
resumed; node utilisation = sum of the fakes' busy time (execution_start -> execution_success in their
history) / (wall x nodes), wall from the resume to the last execution_success.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    PNG_HELP,
    ROLES,
    FakeFleet,
    Router,
    busy_intervals,
    django_setup,
    job_phases,
    machine,
    table,
)
from bench.loadgen import LoadClient

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass
class Submitted:
    ids: list[str] = field(default_factory=list)
    first: float = 0.0  # wall clock
    last: float = 0.0
    rejected: int = 0  # 429 answers (retried)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--capacity", type=int, default=2, help="slots per node")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--per-process", type=int, default=4, help="fake nodes per fake process")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (COMFYROUTER_WORKER_PROCESSES)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="threads per worker (COMFYROUTER_WORKER_CONCURRENCY; its default)")  # fmt: skip
    parser.add_argument("--clients", type=int, default=32, help="concurrent submit connections")
    parser.add_argument("--endpoint", default="sd15-txt2img")
    parser.add_argument("--inputs", default='{"prompt": "a lighthouse at dawn"}', help="JSON endpoint inputs")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps per job (the `steps` input)")
    parser.add_argument("--job-ms", type=float, default=200.0, help="phase 2 job length (steps x step time)")
    parser.add_argument("--previews", choices=["on", "off"], default="on", help="fake sends sampler previews")
    parser.add_argument("--png", choices=["fast", "exact"], default="fast", help=PNG_HELP)
    parser.add_argument("--loras", type=int, default=0, help="LoRA files each fake lists besides its defaults")
    parser.add_argument("--phases", default="1,2", help="which phases to run")
    parser.add_argument("--profile", default="", help="py-spy the web and worker into DIR/phase<n>/")
    parser.add_argument("--profile-wall", action="store_true", help="profile waiting threads too")
    return parser.parse_args()


async def submit_all(router: Router, slug: str, inputs: dict[str, Any], jobs: int, clients: int) -> Submitted:
    out = Submitted()
    headers = {"Authorization": f"Bearer {router.api_key}"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(jobs):
        queue.put_nowait(i)
    async with LoadClient(router.url, headers=headers, connections=clients) as client:

        async def one_client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"inputs": {**inputs, "seed": i}, "wait": False}
                while True:
                    answer = await client.post_json(f"/api/endpoints/{slug}/run", body)
                    if answer.status != 429:
                        break
                    out.rejected += 1
                    await asyncio.sleep(float(answer.headers.get("retry-after", 1)))
                if answer.status not in (200, 202):
                    raise RuntimeError(f"run answered {answer.status}: {answer.text[:300]}")
                out.ids.append(answer.json()["id"])

        out.first = time.time()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        out.last = time.time()
    return out


def wait_finished(ids: list[str], timeout: float) -> dict[str, Any]:
    """Poll the job table until every job has ended; their states and the last finished_at."""
    from django.db import connection
    from django.db.models import Count, Max

    from generations.models import Job

    deadline = time.monotonic() + timeout
    while True:
        jobs = Job.objects.filter(id__in=ids)
        done = jobs.filter(state__in=FINISHED).count()
        if done == len(ids) or time.monotonic() > deadline:
            states = dict(jobs.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
            last = jobs.aggregate(last=Max("finished_at"))["last"]
            connection.close()
            return {"states": states, "last": last.timestamp() if last else None, "done": done}
        connection.close()
        time.sleep(0.25)


def cpu_table(router: Router, before: dict[str, float], after: dict[str, float], jobs: int, wall: float) -> str:
    rows = []
    for role in ROLES:
        used = after.get(role, 0.0) - before.get(role, 0.0)
        rows.append([role, used * 1000 / jobs, used / wall * 100])
    no_redis = sum(after.get(r, 0.0) - before.get(r, 0.0) for r in ROLES if r != "redis")
    rows.append(["router w/o redis", no_redis * 1000 / jobs, no_redis / wall * 100])
    return table(["process", "CPU ms/job", "% of one core"], rows)


def phase_zero_time(args: argparse.Namespace, router: Router, fleet: FakeFleet, inputs: dict[str, Any]) -> None:
    fleet.configure(step_time=0.0, node_time=0.0)
    cpu0, fake0, client0 = router.cpu(), fleet.cpu_seconds(), time.process_time()
    sent = asyncio.run(submit_all(router, args.endpoint, inputs, args.jobs, args.clients))
    client = time.process_time() - client0  # this process: the submitting client (its polling comes after)
    result = wait_finished(sent.ids, timeout=600)
    wall = (result["last"] or time.time()) - sent.first
    cpu1, fake1 = router.cpu(), fleet.cpu_seconds()
    print(f"\nphase 1: {args.jobs} zero-time jobs ({args.steps} steps), {args.nodes} nodes x {args.capacity} "
          "slots")  # fmt: skip
    rows = [
        ["submit (all 1st answers)", sent.last - sent.first, args.jobs / (sent.last - sent.first)],
        ["first submit -> last finished", wall, result["done"] / wall],
    ]
    print(table(["span", "seconds", "jobs/s"], rows))
    print(f"states: {result['states']}; 429s: {sent.rejected}; fake CPU {(fake1 - fake0) * 1000 / args.jobs:.2f} "
          f"ms/job ({(fake1 - fake0) / wall * 100:.0f}% of one core)")  # fmt: skip
    print(table(["job phase", "p50 ms", "p95 ms", "mean ms", "max ms"], job_phases(sent.ids)))
    print(cpu_table(router, cpu0, cpu1, args.jobs, wall))
    # What the machine's cores are shared by: jobs/s cannot exceed their CPU over the CPU one job costs.
    router_cpu = sum(cpu1.get(r, 0.0) - cpu0.get(r, 0.0) for r in ROLES)
    per_job = {"router and Redis": router_cpu, "fake nodes": fake1 - fake0, "bench client": client}
    total = sum(per_job.values()) * 1000 / args.jobs
    parts = ", ".join(f"{name} {seconds * 1000 / args.jobs:.2f}" for name, seconds in per_job.items())
    print(
        f"CPU per job on this machine's {os.cpu_count()} cores: {parts} = {total:.2f} ms; "
        f"at most {os.cpu_count() * 1000 / total:.0f} jobs/s if every core did nothing else"
    )
    print(f"target >= 100 jobs/s: got {result['done'] / wall:.1f}")


class FleetSwitch:
    """Drains or resumes every node at once: one request per node, in parallel (as a fleet-wide script would), so
    the last node is not resumed a dozen round trips after the first. The node list is read and the connections
    opened beforehand: a resume sends its requests and nothing else."""

    def __init__(self, router: Router) -> None:
        self.admin = router.admin_client()
        self.ids = [node["id"] for node in self.admin.get("/api/nodes/").json()]
        self.pool = ThreadPoolExecutor(max_workers=len(self.ids))

    def set(self, *, drained: bool) -> None:
        action = "drain" if drained else "resume"
        for answer in self.pool.map(lambda node_id: self.admin.post(f"/api/nodes/{node_id}/{action}"), self.ids):
            answer.raise_for_status()

    def close(self) -> None:
        self.pool.shutdown()
        self.admin.close()


def utilisation(spans: list[list[tuple[float, float]]], start: float, end: float) -> float:
    busy = sum(max(0.0, min(e, end) - max(s, start)) for node in spans for (s, e) in node)
    return busy / ((end - start) * len(spans))


def idle_gaps(spans: list[list[tuple[float, float]]], wall: float) -> str:
    """How long nodes sat idle between two of their prompts: where utilisation is lost after the start."""
    ordered = [sorted(node) for node in spans]
    gaps = sorted(b[0] - a[1] for node in ordered for a, b in zip(node, node[1:], strict=False))
    if not gaps:
        return "idle gaps between prompts: none"
    ms = [gap * 1000 for gap in gaps]
    lost = sum(gaps) / (wall * len(spans)) * 100
    return (f"idle gaps between a node's prompts: {len(ms)}, p50 {ms[len(ms) // 2]:.1f} ms, "
            f"p95 {ms[int(len(ms) * 0.95)]:.1f} ms, max {ms[-1]:.1f} ms; {lost:.2f}% of node time")  # fmt: skip


def phase_saturated(args: argparse.Namespace, router: Router, fleet: FakeFleet, inputs: dict[str, Any]) -> None:
    step_time = args.job_ms / 1000 / args.steps
    fleet.configure(step_time=step_time, node_time=0.0)
    switch = FleetSwitch(router)
    switch.set(drained=True)
    sent = asyncio.run(submit_all(router, args.endpoint, inputs, args.jobs, args.clients))
    cpu0, fake0 = router.cpu(), fleet.cpu_seconds()
    t0 = time.time()
    switch.set(drained=False)  # each resumed node is dispatched to at once
    switch.close()
    result = wait_finished(sent.ids, timeout=900)
    cpu1, fake1 = router.cpu(), fleet.cpu_seconds()
    spans = [[span for span in busy_intervals(url) if span[0] >= t0 - 0.001] for url in fleet.urls]
    ran = sum(len(node) for node in spans)
    end = max(e for node in spans for _, e in node)
    steady_end = min(max(e for _, e in node) for node in spans if node)  # the first node to run dry
    starts = [min(s for s, _ in node) for node in spans if node]
    wall = end - t0
    mean_busy = sum(e - s for node in spans for s, e in node) / max(ran, 1) * 1000
    print(f"\nphase 2: {args.jobs} jobs of {args.job_ms:.0f} ms ({args.steps} steps x "
          f"{step_time * 1000:.1f} ms) on a saturated queue, {args.nodes} nodes x {args.capacity} "
          "slots")  # fmt: skip
    rows = [
        ["resume -> last execution_success", wall, utilisation(spans, t0, end) * 100],
        ["last node's 1st start -> 1st node dry", steady_end - max(starts), utilisation(spans, max(starts),
                                                                                        steady_end) * 100],
    ]  # fmt: skip
    print(table(["window", "seconds", "utilisation %"], rows))
    ideal = args.jobs * mean_busy / 1000 / args.nodes
    print(f"states: {result['states']}; prompts run: {ran}; mean busy {mean_busy:.1f} ms/prompt; "
          f"jobs/s {ran / wall:.1f} (ideal {args.jobs / ideal:.1f}); first start {min(starts) - t0:.3f} s "
          f"after resume, last node's first start {max(starts) - t0:.3f} s")  # fmt: skip
    fake = fake1 - fake0
    print(f"fake CPU {fake * 1000 / args.jobs:.2f} ms/job ({fake / wall * 100:.0f}% of one core)")
    print(idle_gaps(spans, wall))
    print(table(["job phase", "p50 ms", "p95 ms", "mean ms", "max ms"], job_phases(sent.ids)))
    print(cpu_table(router, cpu0, cpu1, args.jobs, wall))
    print(f"target >= 98% utilisation: got {utilisation(spans, t0, end) * 100:.1f}%")


def inventory(loras: int) -> dict[str, list[str]]:
    """The fakes' default models plus `loras` LoRA files, named like a real collection's."""
    from tests.fake_comfyui import DEFAULT_MODELS

    extra = [f"characters/lora_{i:05d}_character_style_v2.safetensors" for i in range(loras)]
    return {**DEFAULT_MODELS, "loras": DEFAULT_MODELS["loras"] + extra}


def main() -> None:
    args = parse_args()
    logging.disable(logging.INFO)
    inputs = {**json.loads(args.inputs), "steps": args.steps}
    env = {
        "COMFYROUTER_PENDING_LIMIT": str(10 * args.jobs + 100),
        "COMFYROUTER_WORKER_PROCESSES": str(args.workers),
    }
    fakes = f"{args.nodes} in {-(-args.nodes // args.per_process)} process(es)"
    print(f"{machine()}\nworkers: {args.workers} processes, threads pool, --concurrency {args.concurrency} each; "
          f"fakes: {fakes}; previews {args.previews}, {args.png} PNGs; {args.loras} extra LoRA files per node"
    )  # fmt: skip
    with (
        FakeFleet(count=args.nodes, per_process=args.per_process) as fleet,
        Router(env_overrides=env, concurrency=args.concurrency) as router,
    ):
        fleet.configure(previews=args.previews == "on", exact_png=args.png == "exact")
        if args.loras:
            fleet.configure(models=inventory(args.loras))
        router.add_nodes(fleet.urls, capacity=args.capacity)
        django_setup(router)
        # Warm-up: every pool process imports, connects and runs a job once.
        asyncio.run(submit_all(router, args.endpoint, inputs, 2 * args.workers * args.concurrency, args.clients))
        wait_finished([], timeout=1)
        time.sleep(2)
        if "1" in args.phases:
            with router.profiled(args.profile and f"{args.profile}/phase1", wall=args.profile_wall):
                phase_zero_time(args, router, fleet, inputs)
        if "2" in args.phases:
            with router.profiled(args.profile and f"{args.profile}/phase2", wall=args.profile_wall):
                phase_saturated(args, router, fleet, inputs)
    print(f"\nat the end: {machine()}")


if __name__ == "__main__":
    main()
