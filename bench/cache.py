"""Input-file cache: a run whose image URL is cached vs one that downloads the same 5 MB image afresh, and how
many downloads 50 concurrent jobs on one new URL cause.

    .venv/bin/python -m bench.cache [--runs 20] [--concurrent 50] [--megabytes 5]

The router runs for real (`runrouter`, no nodes: the run API resolves inputs before queueing, which is what
is timed; the jobs then fail as unrunnable). The image comes from a local HTTP server, allowed through
COMFYROUTER_URL_ALLOWLIST. Fresh = a URL never seen (a new query string), so the router downloads, hashes and
decodes it; cached = a URL already fetched, answered from the CachedFile table.
"""

from __future__ import annotations

import argparse
import io
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from bench.common import Router, machine, summary, table

RUN = "/api/endpoints/sd15-img2img/run"


def noise_png(megabytes: float) -> bytes:
    # Random pixels barely compress: side² · 3 bytes ≈ the wanted size.
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def image_server(body: bytes) -> tuple[ThreadingHTTPServer, Counter[str]]:
    hits: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path.split("?")[0]] += 1
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


def timed_run(client, url: str) -> float:
    started = time.perf_counter()
    answer = client.post(RUN, json={"inputs": {"prompt": "bench", "image": url}})
    if answer.status_code != 202:
        raise RuntimeError(f"run answered {answer.status_code}: {answer.text[:300]}")
    return (time.perf_counter() - started) * 1000


def fresh_vs_cached(router: Router, base: str, runs: int) -> list[list[object]]:
    fresh, cached = [], []
    with router.client() as client:
        timed_run(client, f"{base}/img.png?warmup")
        for index in range(runs):
            fresh.append(timed_run(client, f"{base}/img.png?n={index}"))
            cached.append(timed_run(client, f"{base}/img.png?warmup"))
    rows = []
    for label, values in (("fresh download", fresh), ("cached", cached)):
        s = summary(values)
        rows.append([label, len(values), s["p50"], s["p95"], s["mean"], s["max"]])
    return rows


def burst(router: Router, base: str, jobs: int) -> float:
    with router.client() as client, ThreadPoolExecutor(jobs) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: timed_run(client, f"{base}/burst.png"), range(jobs)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="fresh/cached pairs")
    parser.add_argument("--concurrent", type=int, default=50, help="jobs posted at once on one new URL")
    parser.add_argument("--megabytes", type=float, default=5.0)
    args = parser.parse_args()
    body = noise_png(args.megabytes)
    server, hits = image_server(body)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    env = {"COMFYROUTER_URL_ALLOWLIST": "127.0.0.1", "COMFYROUTER_PENDING_LIMIT": str(10 * args.concurrent)}
    print(machine())
    print(f"image: {len(body) / 1024 / 1024:.2f} MiB PNG from {base}\n")
    with Router(env_overrides=env) as router:
        rows = fresh_vs_cached(router, base, args.runs)
        print(table(["POST /run with image URL", "n", "p50 ms", "p95 ms", "mean ms", "max ms"], rows))
        print(f"\nfresh / cached (p50): {rows[0][2] / rows[1][2]:.1f}x")
        seconds = burst(router, base, args.concurrent)
        print(f"\n{args.concurrent} concurrent jobs on one new URL: {hits['/burst.png']} download(s), "
              f"all {args.concurrent} answered in {seconds:.2f} s")  # fmt: skip
    server.shutdown()


if __name__ == "__main__":
    main()
