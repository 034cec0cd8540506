"""A protocol-faithful fake ComfyUI 0.3.64 on a real TCP port, built from shared/comfyui-protocol traces.

with FakeComfyUI(step_time=0.05).start() as fake:
    httpx.post(f"{fake.url}/prompt", json={...})
"""

from __future__ import annotations

from .server import FakeComfyUI
from .state import DEFAULT_MODELS, Knobs

__all__ = ["DEFAULT_MODELS", "FakeComfyUI", "Knobs"]
