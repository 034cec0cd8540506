"""Prompt graphs for engine tests: the built-in SD1.5 graph with chosen values."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from workflows_app.builtin import sd15_txt2img

_seeds = itertools.count(1)


def txt2img(*, seed: int | None = None, steps: int = 4, size: int = 64, ckpt: str = "") -> dict[str, Any]:
    """A SD1.5 txt2img prompt; a fresh seed each call so ComfyUI's cache never answers it."""
    graph = copy.deepcopy(sd15_txt2img.GRAPH)
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] == "KSampler":
            inputs.update(seed=next(_seeds) if seed is None else seed, steps=steps)
        elif node["class_type"] == "EmptyLatentImage":
            inputs.update(width=size, height=size)
        elif node["class_type"] == "CLIPTextEncode" and not inputs["text"]:
            inputs["text"] = "a lighthouse at dusk"
        elif node["class_type"] == "CheckpointLoaderSimple" and ckpt:
            inputs["ckpt_name"] = ckpt
    return graph
