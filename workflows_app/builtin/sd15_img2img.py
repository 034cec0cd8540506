"""Stable Diffusion 1.5 image to image: the text-to-image graph, starting from an encoded input image."""

from __future__ import annotations

import copy

from workflows_app.builtin import sd15_txt2img

TITLE = "Stable Diffusion 1.5 — image to image"
DESCRIPTION = "SD 1.5 checkpoint, output the size of the input image, denoise 0.75, 20 steps, cfg 7."

GRAPH: dict = copy.deepcopy(sd15_txt2img.GRAPH)
del GRAPH["5"]  # no empty latent: the input image, encoded, is where sampling starts
GRAPH["10"] = {
    "class_type": "LoadImage",
    "inputs": {"image": "example.png"},
    "_meta": {"title": "Input image [image:image]"},
}
GRAPH["12"] = {
    "class_type": "VAEEncode",
    "inputs": {"pixels": ["10", 0], "vae": ["4", 2]},
    "_meta": {"title": "VAE encode"},
}
GRAPH["3"]["inputs"].update(latent_image=["12", 0], denoise=0.75)
GRAPH["3"]["_meta"]["title"] += " [denoise:denoise]"
GRAPH["9"]["inputs"]["filename_prefix"] = "sd15-img2img"
