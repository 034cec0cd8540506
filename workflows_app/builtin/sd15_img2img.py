"""Stable Diffusion 1.5 image to image: the input image is encoded and partly re-noised."""

from __future__ import annotations

TITLE = "Stable Diffusion 1.5 — image to image"
DESCRIPTION = "SD 1.5 checkpoint, output the size of the input image, denoise 0.75, 20 steps, cfg 7."

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
    "12": {
        "class_type": "VAEEncode",
        "inputs": {"pixels": ["10", 0], "vae": ["4", 2]},
        "_meta": {"title": "VAE encode"},
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
            "denoise": 0.75,
        },
        "_meta": {
            "title": "KSampler [seed:seed] [steps:steps] [cfg:cfg] [sampler:sampler_name] "
            "[scheduler:scheduler] [denoise:denoise]"
        },
    },
    "8": {
        "class_type": "VAEDecode",
        "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
        "_meta": {"title": "VAE decode"},
    },
    "9": {
        "class_type": "SaveImage",
        "inputs": {"images": ["8", 0], "filename_prefix": "sd15-img2img"},
        "_meta": {"title": "Save image [images]"},
    },
}
