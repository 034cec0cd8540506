"""Stable Diffusion XL base text to image: the SD 1.5 graph with SDXL's checkpoint and defaults."""

from __future__ import annotations

import copy

from workflows_app.builtin import sd15_txt2img

TITLE = "Stable Diffusion XL — text to image"
DESCRIPTION = "SDXL 1.0 base checkpoint, 1024×1024, 25 steps, cfg 7, dpmpp_2m / karras."

GRAPH: dict = copy.deepcopy(sd15_txt2img.GRAPH)
GRAPH["4"]["inputs"]["ckpt_name"] = "sd_xl_base_1.0.safetensors"
GRAPH["5"]["inputs"].update(width=1024, height=1024)
GRAPH["3"]["inputs"].update(steps=25, sampler_name="dpmpp_2m", scheduler="karras")
GRAPH["9"]["inputs"]["filename_prefix"] = "sdxl-txt2img"
