"""API-format graphs copied from the recorded ComfyUI 0.3.64 traces (tests must not read /work/shared)."""

from __future__ import annotations

import copy
from typing import Any

# ws/m_ksampler_warm.submitter.jsonl, _header.post_prompt: txt2img, 64x64, 4 steps.
TXT2IMG: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15-random.ckpt"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 799174504,
            "steps": 4,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "tiny", "images": ["8", 0]}},
}

# http/post_prompt_success.json: EmptyImage -> ImageInvert -> SaveImage + PreviewImage.
INVERT_SAVE: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 16711680},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "proto_success"}},
    "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
}

# http/post_prompt_validation_errors.json, case 9: width 0 -> 400 value_smaller_than_min on node 1.
WIDTH_ZERO: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "proto_val"}},
}

# http/post_prompt_validation_errors.json, case 16: one bad output of two -> 200 with node_errors.
PARTIAL: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 202}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "proto_partial"}},
    "3": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 64, "batch_size": 1, "color": 0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "proto_partial_bad"}},
}

# ws/c_runtime_error_loadimage.submitter.jsonl: LoadImage -> ImageInvert -> SaveImage.
LOAD_INVERT_SAVE: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "not_an_image.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "proto_fail"}},
}


def txt2img(*, seed: int = 799174504, steps: int = 4) -> dict[str, Any]:
    """TXT2IMG with another seed / step count (a new seed re-runs KSampler, VAEDecode, SaveImage)."""
    graph = copy.deepcopy(TXT2IMG)
    graph["3"]["inputs"].update(seed=seed, steps=steps)
    return graph


def load_image(name: str) -> dict[str, Any]:
    """LOAD_INVERT_SAVE reading the given input file."""
    graph = copy.deepcopy(LOAD_INVERT_SAVE)
    graph["1"]["inputs"]["image"] = name
    return graph


# ws/g_binary_text_frame.submitter.jsonl: GetImageSize sends a binary TEXT frame (event 3).
IMAGE_SIZE_TEXT: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 9003}},
    "2": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
    "3": {
        "class_type": "EmptyImage",
        "inputs": {"width": ["2", 0], "height": ["2", 1], "batch_size": 1, "color": 9002},
    },
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "proto_textframe"}},
}
