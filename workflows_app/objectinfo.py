"""The node classes endpoints are validated against.

ComfyUI 0.3.64's own object_info ships with the router (recorded from a stock server), so widget
types, bounds and enums are known before any node is registered. Which model files exist is a
fact of the fleet, not of a class: those choices are left open here and checked by the scheduler
(`nodes.dispatch.missing_models`), which fails a job at once naming the files no node has.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from nodes.dispatch import model_folder

BUNDLED = Path(__file__).resolve().parent / "data" / "object_info.json"


@functools.cache
def object_info() -> dict[str, Any]:
    """Class name → ComfyUI's object_info entry, with model-file choices left open."""
    info = json.loads(BUNDLED.read_text())
    for class_type, entry in info.items():
        for section in ("required", "optional"):
            inputs = entry.get("input", {}).get(section, {})
            for name in inputs:
                if model_folder(class_type, name):
                    inputs[name] = _open_choices(inputs[name])
    return info


def _open_choices(spec: list[Any]) -> list[Any]:
    spec = copy.deepcopy(spec)
    if spec and isinstance(spec[0], list):
        spec[0] = []
    elif spec and spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        spec[1]["options"] = []
    return spec
