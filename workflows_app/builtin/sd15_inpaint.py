"""Stable Diffusion 1.5 inpainting: regenerate the masked part of the input image.

The mask is its own file, read by LoadImageMask from its alpha channel by default: transparent
pixels are repainted, as in OpenAI's image edits. Sending the image itself as the mask uses
the image's own transparency. VAEEncodeForInpaint blanks the masked area, so the sampler
always runs at full denoise.
"""

from __future__ import annotations

TITLE = "Stable Diffusion 1.5 — inpainting"
DESCRIPTION = "SD 1.5 checkpoint, repaints where the mask is set (alpha by default), mask grown by 6 px."

GRAPH: dict = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        "_meta": {"title": "Load checkpoint [checkpoint:ckpt_name]"},
    },
    "10": {
        "class_type": "LoadImage",
        "inputs": {"image": "example.png"},
        "_meta": {"title": "Input image [image:image]"},
    },
    "11": {
        "class_type": "LoadImageMask",
        "inputs": {"image": "example.png", "channel": "alpha"},
        "_meta": {"title": "Mask [mask:image] [mask_channel:channel]"},
    },
    "12": {
        "class_type": "VAEEncodeForInpaint",
        "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["11", 0], "grow_mask_by": 6},
        "_meta": {"title": "VAE encode for inpainting [grow_mask_by:grow_mask_by]"},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "", "clip": ["4", 1]},
        "_meta": {"title": "Positive prompt [prompt:text]"},
    },
    "7": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "blurry, low quality, watermark, text", "clip": ["4", 1]},
        "_meta": {"title": "Negative prompt [negative_prompt:text]"},
    },
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["4", 0],
            "seed": 0,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["12", 0],
            "denoise": 1.0,
        },
        "_meta": {
            "title": "KSampler [seed:seed] [steps:steps] [cfg:cfg] [sampler:sampler_name] [scheduler:scheduler]"
        },
    },
    "8": {
        "class_type": "VAEDecode",
        "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
        "_meta": {"title": "VAE decode"},
    },
    "9": {
        "class_type": "SaveImage",
        "inputs": {"images": ["8", 0], "filename_prefix": "sd15-inpaint"},
        "_meta": {"title": "Save image [images]"},
    },
}
