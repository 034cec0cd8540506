"""A protocol-faithful fake ComfyUI 0.3.64 on a real TCP port, built from shared/comfyui-protocol traces.

    with FakeComfyUI(step_time=0.05).start() as fake:
        httpx.post(f"{fake.url}/prompt", json={"prompt": graph, "client_id": "me"})
        fake.wait_idle()

Lifecycle: start() -> self (returns once the port accepts), stop(), crash(restart_after=None) (no close
frames, port refuses), restart() (same port; empty queue/history/cache, `number` from 0), wait_idle(timeout).
Attributes: url, ws_url, port, dirs (input/output/temp folders), knobs, stats.

Knobs (constructor keywords or `configure(**knobs)`, thread-safe, also `POST /_fake/configure`):
    step_time: float = 0.0        seconds per sampler step (KSampler*, SamplerCustom*, anything with `steps`)
    node_time: float = 0.0        seconds every other executed node takes
    steps_override: int | None    run this many steps instead of the graph's `steps`
    previews: bool = True         binary type 1/4 JPEG previews per step
    exact_png: bool = True        output PNGs byte-identical to ComfyUI's (Pillow's); False: the same image and
                                  text from a direct encoder, 0.15 ms instead of 3 at 512x512 (benchmarks)
    models: dict[str, list[str]]  folder -> files; feeds /models/{folder} and ckpt_name/lora_name/... combos
    require_token: str | None     every ComfyUI route and the WS upgrade need `Authorization: Bearer <token>`
    fault: dict | str | None      {"kind": ..., ...}; a bare string is {"kind": <string>}

Faults. `node`/`at_node` (node id), `class_type` and `at_step` (sampler step, 1-based) restrict where one
fires; without them it fires at the first node of the next prompt. `count` = how many times (crash: 1).
    {"kind": "crash", "at_step": 5, "restart_after": 1.0}   abort every socket (1006), refuse connections
    {"kind": "hang", "node": "8"}                           stop emitting for the running prompt, sockets open
    {"kind": "slow_start", "seconds": 2.0}                  hold HTTP/WS answers and prompt starts that long
    {"kind": "runtime_error", "node": "3", "exception_type": "RuntimeError", "exception_message": "boom"}
    {"kind": "reject", "type": "invalid_prompt"}            POST /prompt answers a recorded 400

Counters: prompts_received, received_prompts, last_prompt_body, interrupts ([{"prompt_id", "effective"}]),
uploads, request_log ([(method, path)]), requests_per_path; `stats` (Stats, snapshot() = GET /_fake/stats).
Control routes (ignore require_token): GET /_fake/stats, POST /_fake/configure, POST /_fake/crash
{"restart_after": s}, POST /_fake/restart, POST /_fake/reset_stats.
"""

from __future__ import annotations

from .server import FakeComfyUI
from .state import DEFAULT_MODELS, Knobs

__all__ = ["DEFAULT_MODELS", "FakeComfyUI", "Knobs"]
