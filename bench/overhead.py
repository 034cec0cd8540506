"""Router overhead: sequential sync jobs through the router (A) vs the same prompt straight to the same fake
node (B), alternating in one run; added latency until the image bytes are in the caller's hands, and the
router's CPU per job from /proc.

    .venv/bin/python -m bench.overhead [--jobs 200] [--warmup 20] [--endpoint sd15-txt2img] [--routes inline,run]
                                       [--png fast|exact]

A is measured on each of two routes, in its own loop (each loop's CPU is its own):
  inline = POST /api/endpoints/<slug> (the ComfyUI-Fast-API route, the endpoint in base64 output mode): the
           image comes base64 in the answer, as single-node wrappers answer;
  run    = POST /api/endpoints/<slug>/run {"inputs": ..., "wait": true} + GET outputs[0].url.
Both on one persistent httpx client.
B = ComfyClient.run_prompt(graph) (socket + POST /prompt + follow until `executing` null) + /view,
    with one persistent ComfyClient. The fake runs in its own process with zero-time execution.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import PNG_HELP, ROLES, FakeFleet, Router, django_setup, machine, summary, table


@dataclass
class Samples:
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    # Per router job: (job id, wall clock at submit, at the 200 answer, at the image bytes).
    marks: list[tuple[str, float, float, float]] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="measured A/B pairs")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured A/B pairs first")
    parser.add_argument("--endpoint", default="sd15-txt2img")
    parser.add_argument("--routes", default="inline,run", help="router routes measured (A), each in its own loop")
    parser.add_argument("--inputs", default='{"prompt": "a lighthouse at dawn"}', help="JSON endpoint inputs")
    parser.add_argument("--previews", choices=["on", "off"], default="on", help="fake sends sampler previews")
    parser.add_argument("--png", choices=["fast", "exact"], default="fast", help=PNG_HELP)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle router CPU measured first")
    parser.add_argument("--concurrency", type=int, default=None, help="runrouter --concurrency")
    parser.add_argument("--profile", default="", help="py-spy web and worker into DIR/<route>/ (skews timings)")
    return parser.parse_args()


def router_prompt(job_id: str) -> dict[str, Any]:
    """The prompt the router rendered for one of its jobs (read from the job row)."""
    from generations.models import Job

    return Job.objects.values_list("prompt", flat=True).get(id=job_id)


def with_seed(graph: dict[str, Any], old: int, new: int) -> dict[str, Any]:
    """A copy of `graph` whose inputs equal to `old` (the seed the router was given) are `new`."""
    copy, changed = json.loads(json.dumps(graph)), 0
    for node in copy.values():
        inputs = node.get("inputs", {})
        for name, value in inputs.items():
            if value == old and not isinstance(value, bool):
                inputs[name], changed = new, changed + 1
    if not changed:
        raise RuntimeError("the endpoint's prompt has no seed input: pass inputs with a `seed`")
    return copy


def run_inline(client: httpx.Client, slug: str, inputs: dict[str, Any], marks: list) -> float:
    wall0, start = time.time(), time.perf_counter()
    answer = client.post(f"/api/endpoints/{slug}", json=inputs)
    if answer.status_code != 200:
        raise RuntimeError(f"the Fast-API route answered {answer.status_code}: {answer.text[:500]}")
    [images] = answer.json().values()
    image = base64.b64decode(images[0])
    elapsed, answered = time.perf_counter() - start, time.time()
    job_id = answer.headers["Location"].rsplit("/", 1)[1]
    marks.append((job_id, wall0, answered, answered))  # the image came with the answer
    assert image[:4] == b"\x89PNG"
    return elapsed


def run_then_get(client: httpx.Client, slug: str, inputs: dict[str, Any], marks: list) -> float:
    wall0, start = time.time(), time.perf_counter()
    answer = client.post(f"/api/endpoints/{slug}/run", json={"inputs": inputs, "wait": True})
    if answer.status_code != 200:
        raise RuntimeError(f"run answered {answer.status_code}: {answer.text[:500]}")
    wall1 = time.time()
    job = answer.json()
    if job["state"] != "succeeded" or not job["outputs"]:
        raise RuntimeError(f"job {job['id']} ended {job['state']}: {job['error']}")
    image = client.get(job["outputs"][0]["url"])
    image.raise_for_status()
    elapsed = time.perf_counter() - start
    marks.append((job["id"], wall0, wall1, time.time()))
    assert image.content[:4] == b"\x89PNG"
    return elapsed


ROUTES = {"inline": run_inline, "run": run_then_get}


def run_b(comfy: Any, graph: dict[str, Any]) -> float:
    start = time.perf_counter()
    result = comfy.run_prompt(graph)
    first = result.outputs[0]
    data = comfy.view(first.filename, subfolder=first.subfolder, kind=first.type)
    elapsed = time.perf_counter() - start
    assert data[:4] == b"\x89PNG"
    return elapsed


def alternate(
    pairs: int, route: str, slug: str, base: dict[str, Any], client: httpx.Client, comfy: Any
) -> Samples:
    samples, run_a = Samples(), ROUTES[route]
    seed0 = random.randrange(1 << 40)
    # B sends exactly what the router rendered (read back from a router job), with its own seed: each
    # prompt differs from the one before it, so the fake's execution cache never answers.
    template_job: list = []
    run_a(client, slug, {**base, "seed": seed0 - 1}, template_job)
    template = router_prompt(template_job[0][0])
    graphs = [with_seed(template, seed0 - 1, seed0 + 2 * i + 1) for i in range(pairs)]
    for i in range(pairs):
        a_inputs = {**base, "seed": seed0 + 2 * i}
        if i % 2 == 0:
            samples.a.append(run_a(client, slug, a_inputs, samples.marks))
            samples.b.append(run_b(comfy, graphs[i]))
        else:
            samples.b.append(run_b(comfy, graphs[i]))
            samples.a.append(run_a(client, slug, a_inputs, samples.marks))
    return samples


def phases(marks: list[tuple[str, float, float, float]]) -> list[list[object]]:
    """Where a router job's time goes, from the job row's timestamps (wall clock, ms)."""
    from generations.models import Job

    rows = {str(j["id"]): j for j in Job.objects.filter(id__in=[m[0] for m in marks]).values()}
    spans: dict[str, list[float]] = {name: [] for name, _ in PHASES}
    for job_id, submit, answered, image in marks:
        job = rows[job_id]
        t = [submit, job["created_at"].timestamp(), job["assigned_at"].timestamp(),
             job["started_at"].timestamp(), job["finished_at"].timestamp(), answered, image]  # fmt: skip
        for index, (name, _) in enumerate(PHASES):
            spans[name].append((t[index + 1] - t[index]) * 1000)
    return [[name, what, summary(v)["p50"], summary(v)["p95"], summary(v)["mean"]]
            for (name, what), v in zip(PHASES, spans.values(), strict=True)]  # fmt: skip


PHASES = [
    ("submit->created", "web: auth, validate, render, INSERT"),
    ("created->assigned", "web: the claim, in the INSERT's transaction"),
    ("assigned->started", "execute_job task -> lease, WS, POST /prompt, 1st event"),
    ("started->finished", "follow events, /view, store file, finish"),
    ("finished->answered", "Redis notify -> web wakes, reload, JSON, response"),
    ("answered->image", "GET outputs/0 (route run; none inline)"),
]


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after.get(role, 0.0) - before.get(role, 0.0) for role in after}


def report(args: argparse.Namespace, route: str, samples: Samples, cpu: dict[str, float],
           idle: dict[str, float], wall: float, fake_cpu: float) -> None:  # fmt: skip
    ms = 1000.0
    a = [x * ms for x in samples.a]
    b = [x * ms for x in samples.b]
    added = [x - y for x, y in zip(a, b, strict=True)]
    rows = []
    for name, values in (("A router", a), ("B direct", b), ("A-B per pair", added)):
        s = summary(values)
        rows.append([name, s["p50"], s["p95"], s["p99"], s["mean"], s["min"], s["max"]])
    print(f"\n== route {route}: {args.jobs} A/B pairs after {args.warmup} warm-up pairs, "
          f"endpoint {args.endpoint}, previews {args.previews}, {args.png} PNGs; {machine()}")  # fmt: skip
    print("\nlatency until the image bytes are in hand (ms)")
    print(table(["", "p50", "p95", "p99", "mean", "min", "max"], rows))
    diff_pcts = {k: summary(a)[k] - summary(b)[k] for k in ("p50", "p95", "p99")}
    print(f"difference of percentiles (A pXX - B pXX): p50 {diff_pcts['p50']:.2f}  p95 {diff_pcts['p95']:.2f}  "
          f"p99 {diff_pcts['p99']:.2f} ms")  # fmt: skip
    n = args.jobs
    rows = []
    for role in ROLES:
        background = idle.get(role, 0.0) * wall
        rows.append([role, cpu.get(role, 0.0) * ms / n, (cpu.get(role, 0.0) - background) * ms / n,
                     idle.get(role, 0.0) * ms])  # fmt: skip
    no_redis = sum(cpu.get(r, 0.0) for r in ROLES if r != "redis")
    no_redis_bg = sum(idle.get(r, 0.0) for r in ROLES if r != "redis") * wall
    total = no_redis + cpu.get("redis", 0.0)
    total_bg = no_redis_bg + idle.get("redis", 0.0) * wall
    rows.append(
        ["router w/o redis", no_redis * ms / n, (no_redis - no_redis_bg) * ms / n, no_redis_bg / wall * ms]
    )
    rows.append(["router + redis", total * ms / n, (total - total_bg) * ms / n, total_bg / wall * ms])
    print("\nrouter job phases from the job row timestamps (ms)")
    print(table(["phase", "what", "p50", "p95", "mean"], phases(samples.marks)))
    print(f"\nrouter CPU over the measured loop ({wall:.1f} s wall, {n} router jobs), from /proc utime+stime")
    print(table(["process", "ms/job", "ms/job net of idle", "idle ms/s"], rows))
    print(f"(fake node process CPU for reference: {fake_cpu * ms / (2 * n):.2f} ms per prompt)")
    print(
        f"\ntargets ({route}): added p50 <= 15 ms (got {summary(added)['p50']:.2f}), p99 <= 50 ms "
        f"(got {summary(added)['p99']:.2f}), CPU <= 15 ms/job (got {no_redis * ms / n:.2f} without Redis, "
        f"{total * ms / n:.2f} with)"
    )


def main() -> None:
    args = parse_args()
    logging.disable(logging.INFO)
    base = json.loads(args.inputs)
    routes = args.routes.split(",")
    if unknown := set(routes) - set(ROUTES):
        raise SystemExit(f"unknown route(s) {', '.join(sorted(unknown))}: choose from {', '.join(ROUTES)}")
    from nodes.comfy import ComfyClient  # no Django needed: the client is plain httpx + websockets

    print(f"at the start: {machine()}")

    with FakeFleet(count=1) as fleet, Router(concurrency=args.concurrency) as router:
        fleet.configure(previews=args.previews == "on", exact_png=args.png == "exact")
        router.add_nodes(fleet.urls)
        django_setup(router)
        comfy = ComfyClient(fleet.urls[0], timeout=30)
        with router.client() as client:
            # The Fast-API route answers with the images themselves in base64 output mode; /run is unaffected.
            client.patch(f"/api/endpoints/{args.endpoint}", json={"output_mode": "base64"}).raise_for_status()
            for route in routes:
                alternate(args.warmup, route, args.endpoint, base, client, comfy)
            before = router.cpu()
            time.sleep(args.idle)
            idle = {role: v / args.idle for role, v in cpu_delta(before, router.cpu()).items()}
            for route in routes:
                fake_before = fleet.cpu_seconds()
                start, before = time.perf_counter(), router.cpu()
                with router.profiled(args.profile and f"{args.profile}/{route}"):
                    samples = alternate(args.jobs, route, args.endpoint, base, client, comfy)
                cpu, wall = cpu_delta(before, router.cpu()), time.perf_counter() - start
                fake_cpu = fleet.cpu_seconds() - fake_before
                report(args, route, samples, cpu, idle, wall, fake_cpu)
        comfy.close()


if __name__ == "__main__":
    main()
