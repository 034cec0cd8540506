"""Flux.1 dev text to image: ComfyUI's Flux dev example graph (separate UNet, text encoders, VAE).

Flux dev is guidance-distilled: FluxGuidance sets the strength and BasicGuider samples
without a negative conditioning, so this endpoint has `guidance` and no `negative_prompt`.
"""

from __future__ import annotations

TITLE = "Flux.1 dev — text to image"
DESCRIPTION = "Flux.1 dev with CLIP-L and T5-XXL fp16, 1024×1024, 20 steps, guidance 3.5, euler / simple."

GRAPH: dict = {
    "12": {
        "class_type": "UNETLoader",
        "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"},
        "_meta": {"title": "Load diffusion model [unet:unet_name] [weight_dtype:weight_dtype]"},
    },
    "11": {
        "class_type": "DualCLIPLoader",
        "inputs": {
            "clip_name1": "clip_l.safetensors",
            "clip_name2": "t5xxl_fp16.safetensors",
            "type": "flux",
        },
        "_meta": {"title": "Load text encoders [clip_l:clip_name1] [t5xxl:clip_name2]"},
    },
    "10": {
        "class_type": "VAELoader",
        "inputs": {"vae_name": "ae.safetensors"},
        "_meta": {"title": "Load VAE [vae:vae_name]"},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "", "clip": ["11", 0]},
        "_meta": {"title": "Positive prompt [prompt:text]"},
    },
    "26": {
        "class_type": "FluxGuidance",
        "inputs": {"conditioning": ["6", 0], "guidance": 3.5},
        "_meta": {"title": "Flux guidance [guidance:guidance]"},
    },
    "22": {
        "class_type": "BasicGuider",
        "inputs": {"model": ["12", 0], "conditioning": ["26", 0]},
        "_meta": {"title": "Guider"},
    },
    "25": {
        "class_type": "RandomNoise",
        "inputs": {"noise_seed": 0},
        "_meta": {"title": "Noise [seed:noise_seed]"},
    },
    "16": {
        "class_type": "KSamplerSelect",
        "inputs": {"sampler_name": "euler"},
        "_meta": {"title": "Sampler [sampler:sampler_name]"},
    },
    "17": {
        "class_type": "BasicScheduler",
        "inputs": {"model": ["12", 0], "scheduler": "simple", "steps": 20, "denoise": 1.0},
        "_meta": {"title": "Scheduler [scheduler:scheduler] [steps:steps]"},
    },
    "27": {
        "class_type": "EmptySD3LatentImage",
        "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
        "_meta": {"title": "Empty latent [width:width] [height:height] [batch_size:batch_size]"},
    },
    "13": {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["25", 0],
            "guider": ["22", 0],
            "sampler": ["16", 0],
            "sigmas": ["17", 0],
            "latent_image": ["27", 0],
        },
        "_meta": {"title": "Sampler (custom advanced)"},
    },
    "8": {
        "class_type": "VAEDecode",
        "inputs": {"samples": ["13", 0], "vae": ["10", 0]},
        "_meta": {"title": "VAE decode"},
    },
    "9": {
        "class_type": "SaveImage",
        "inputs": {"images": ["8", 0], "filename_prefix": "flux-txt2img"},
        "_meta": {"title": "Save image [images]"},
    },
}
