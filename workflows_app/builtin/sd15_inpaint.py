"""Stable Diffusion 1.5 inpainting: regenerate the masked part of the input image.

The mask is its own file, read by LoadImageMask from its alpha channel by default: transparent
pixels are repainted, as in OpenAI's image edits. Sending the image itself as the mask uses
the image's own transparency. VAEEncodeForInpaint blanks the masked area, so the sampler
always runs at full denoise.
"""

from __future__ import annotations

import copy

from workflows_app.builtin import sd15_txt2img

TITLE = "Stable Diffusion 1.5 — inpainting"
DESCRIPTION = "SD 1.5 checkpoint, repaints where the mask is set (alpha by default), mask grown by 6 px."

GRAPH: dict = copy.deepcopy(sd15_txt2img.GRAPH)
del GRAPH["5"]  # no empty latent: the input image, encoded with its masked area blanked, is the start
GRAPH["10"] = {
    "class_type": "LoadImage",
    "inputs": {"image": "example.png"},
    "_meta": {"title": "Input image [image:image]"},
}
GRAPH["11"] = {
    "class_type": "LoadImageMask",
    "inputs": {"image": "example.png", "channel": "alpha"},
    "_meta": {"title": "Mask [mask:image] [mask_channel:channel]"},
}
GRAPH["12"] = {
    "class_type": "VAEEncodeForInpaint",
    "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["11", 0], "grow_mask_by": 6},
    "_meta": {"title": "VAE encode for inpainting [grow_mask_by:grow_mask_by]"},
}
GRAPH["3"]["inputs"]["latent_image"] = ["12", 0]
GRAPH["9"]["inputs"]["filename_prefix"] = "sd15-inpaint"
