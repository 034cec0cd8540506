"""Stable Diffusion 1.5 text to image: ComfyUI's default workflow, annotated."""

from __future__ import annotations

TITLE = "Stable Diffusion 1.5 — text to image"
DESCRIPTION = "SD 1.5 checkpoint, 512×512, 20 steps, cfg 7, euler / normal."

GRAPH: dict = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        "_meta": {"title": "Load checkpoint [checkpoint:ckpt_name]"},
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
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
        "_meta": {"title": "Empty latent [width:width] [height:height] [batch_size:batch_size]"},
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
            "latent_image": ["5", 0],
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
        "inputs": {"images": ["8", 0], "filename_prefix": "sd15-txt2img"},
        "_meta": {"title": "Save image [images]"},
    },
}
