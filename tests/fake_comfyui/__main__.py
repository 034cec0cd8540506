"""`python -m tests.fake_comfyui --port N [--step-time S] [--host H]`: run the fake in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading

from .server import FakeComfyUI


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake ComfyUI 0.3.64 server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--step-time", type=float, default=0.0)
    parser.add_argument("--node-time", type=float, default=0.0)
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeComfyUI(host=args.host, port=args.port, step_time=args.step_time, node_time=args.node_time).start()
    print(f"fake ComfyUI ready on {fake.url}", flush=True)
    stop.wait()
    fake.stop()


if __name__ == "__main__":
    main()
