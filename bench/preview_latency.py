"""Preview latency: from the fake ComfyUI writing a preview frame to a browser-side subscriber receiving it.

    .venv/bin/python -m bench.preview_latency [--steps 150] [--step-time 0.05] [--subscribers 1 50]

The whole router runs as in production (`manage.py runrouter`: Daphne, a Celery worker, Redis) in a
temporary var dir. The fake ComfyUI runs in this process, so its send can be timed without editing it:
the fake's socket writer (`tests.fake_comfyui.hub._send`) is wrapped to stamp each binary frame, keyed
by the hash of its JPEG. The subscribers are `websockets` clients in a child process (as browsers would
be) that acknowledge each preview at once, as the job page does. A frame's latency is its arrival time
minus the fake's stamp, both on the machine-wide monotonic clock. Previews are coalesced per subscriber,
so one that falls behind receives fewer frames rather than later ones: "frames/subscriber" counts them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PYTHON, Router, percentile  # noqa: E402
from tests.fake_comfyui import FakeComfyUI  # noqa: E402
from tests.fake_comfyui import hub as fake_hub  # noqa: E402

JPEG_START = b"\xff\xd8\xff"


def frame_key(data: bytes) -> bytes:
    """The hash of the JPEG inside a ComfyUI binary frame (type 1 or 4) or of a bare JPEG."""
    return hashlib.sha1(data[data.find(JPEG_START) :]).digest()


class SendStamps:
    """Wraps the fake's socket writer: the monotonic time each preview frame started going out."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}
        real = fake_hub._send

        async def timed(ws, payload):
            if isinstance(payload, bytes) and JPEG_START in payload[:512]:
                self.sent.setdefault(frame_key(payload), time.perf_counter())
            await real(ws, payload)

        fake_hub._send = timed


async def subscribe(url: str, origin: str, arrivals: list[tuple[float, bytes]], connected: asyncio.Event) -> None:
    async with connect(url, origin=origin, max_size=None) as ws:
        async for frame in ws:
            if isinstance(frame, bytes):
                arrivals.append((time.perf_counter(), frame_key(frame)))
                await ws.send('{"type": "ack"}')
                continue
            message = json.loads(frame)
            if message["type"] == "snapshot":
                connected.set()
            if message["type"] in ("done", "failed", "cancelled"):
                return


async def subscribe_all(url: str, origin: str, count: int) -> list[list[tuple[float, bytes]]]:
    arrivals: list[list[tuple[float, bytes]]] = [[] for _ in range(count)]
    events = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(subscribe(url, origin, arrivals[i], events[i])) for i in range(count)]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), 60)
    print("READY", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), 600)
    return arrivals


def serve_subscribers(url: str, origin: str, count: int) -> None:
    """Child mode: `count` subscribers; prints READY once all have their snapshot, then their arrivals."""
    arrivals = asyncio.run(subscribe_all(url, origin, count))
    print(json.dumps([[(at, key.hex()) for at, key in frames] for frames in arrivals]), flush=True)


def run_job(router: Router, subscribers: int) -> list[list[tuple[float, bytes]]]:
    """One job watched by `subscribers` clients in a child process (its CPU is not the fake's)."""
    with router.admin_client() as client:
        answer = client.post("/api/endpoints/sd15-txt2img/run", json={"inputs": {"width": 64, "height": 64}})
        answer.raise_for_status()
        job_id = answer.json()["id"]
    url = f"ws://127.0.0.1:{router.port}/ws/jobs/{job_id}/"
    argv = [PYTHON, "-m", "bench.preview_latency", "--subscribe", url, router.url, str(subscribers)]
    child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "READY":
        raise RuntimeError("subscribers did not connect")
    out, _ = child.communicate(timeout=600)
    return [[(at, bytes.fromhex(key)) for at, key in frames] for frames in json.loads(out)]


def measure(router: Router, stamps: SendStamps, subscribers: int) -> dict[str, float]:
    stamps.sent.clear()
    arrivals = run_job(router, subscribers)
    # perf_counter is CLOCK_MONOTONIC: one clock for every process on this machine.
    latencies = [(at - stamps.sent[key]) * 1000 for frames in arrivals for at, key in frames if key in stamps.sent]
    received = [len(frames) for frames in arrivals]
    return {"subscribers": subscribers, "frames sent": len(stamps.sent),
            "frames/subscriber": sum(received) / subscribers,
            "samples": len(latencies), "p50 ms": percentile(latencies, 50), "p99 ms": percentile(latencies, 99),
            "max ms": max(latencies, default=math.nan)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="sampler steps (one preview each) per job")
    parser.add_argument("--step-time", type=float, default=0.05, help="seconds per step on the fake")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--subscribe", nargs=3, metavar=("URL", "ORIGIN", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        url, origin, count = args.subscribe
        serve_subscribers(url, origin, int(count))
        return
    stamps = SendStamps()
    # node_time: the nodes before the sampler take a second, so every subscriber is connected before frame 1.
    fake = FakeComfyUI(steps_override=args.steps, step_time=args.step_time, node_time=0.3).start()
    try:
        with Router() as router:
            router.add_nodes([fake.url], capacity=1)
            measure(router, stamps, 1)  # warm-up: imports, connections and caches
            rows = [measure(router, stamps, n) for n in args.subscribers]
    finally:
        fake.stop()
    print(f"preview latency, fake → subscriber ({args.steps} steps × {args.step_time * 1000:.0f} ms, "
          f"512×512 JPEG previews; nproc {os.cpu_count()})")  # fmt: skip
    headers = list(rows[0])
    print("  ".join(f"{h:>17}" for h in headers))
    for row in rows:
        print("  ".join(f"{row[h]:>17.2f}" if isinstance(row[h], float) else f"{row[h]:>17}" for h in headers))


if __name__ == "__main__":
    main()
