"""The recorded /object_info, with model and input-file combos filled from the fake's knobs."""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"

# Combo inputs whose choices ComfyUI fills from a models folder; the recording server had no
# models, so object_info.json holds empty lists there (e.g. CheckpointLoaderSimple.ckpt_name).
INPUT_FOLDERS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "control_net_name": "controlnet",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "config_name": "configs",
    "photomaker_model_name": "photomaker",
}
CLASS_INPUT_FOLDERS = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
}
IMAGE_INPUT_CLASSES = ("LoadImage", "LoadImageMask")


@functools.cache
def base_object_info() -> dict[str, Any]:
    with open(DATA_DIR / "object_info.json", encoding="utf-8") as f:
        return json.load(f)


@functools.cache
def static_responses() -> dict[str, Any]:
    with open(DATA_DIR / "static_responses.json", encoding="utf-8") as f:
        return json.load(f)


@functools.cache
def _patch_points() -> dict[str, list[tuple[str, str, str]]]:
    """class -> [(category, input_name, folder)] for every combo input fed by a models folder."""
    points: dict[str, list[tuple[str, str, str]]] = {}
    for class_name, info in base_object_info().items():
        for category in ("required", "optional"):
            for name, spec in info["input"].get(category, {}).items():
                folder = CLASS_INPUT_FOLDERS.get((class_name, name)) or INPUT_FOLDERS.get(name)
                if folder and _is_combo(spec):
                    points.setdefault(class_name, []).append((category, name, folder))
    return points


def _is_combo(spec: list[Any]) -> bool:
    return isinstance(spec[0], list) or spec[0] == "COMBO"


def _set_choices(spec: list[Any], choices: list[str]) -> None:
    if spec[0] == "COMBO":
        spec[1]["options"] = choices
    else:
        spec[0] = choices


def input_files(input_dir: str) -> list[str]:
    """Top-level files of the input folder, sorted (http/get_object_info_LoadImage_after_uploads.json)."""
    names = [n for n in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, n))]
    return sorted(names)


def class_info(class_name: str, models: dict[str, list[str]], input_dir: str) -> dict[str, Any] | None:
    """One class's info as the fake serves and validates it, or None for an unknown class."""
    info = base_object_info().get(class_name)
    if info is None:
        return None
    points = _patch_points().get(class_name)
    if not points and class_name not in IMAGE_INPUT_CLASSES:
        return info
    info = copy.deepcopy(info)
    for category, name, folder in points or ():
        spec = info["input"][category][name]
        original = spec[1].get("options", []) if spec[0] == "COMBO" else spec[0]
        extras = [x for x in original if x not in models.get(folder, [])]
        _set_choices(spec, sorted(models.get(folder, [])) + extras)
    if class_name in IMAGE_INPUT_CLASSES:
        _set_choices(info["input"]["required"]["image"], input_files(input_dir))
    return info


def full_object_info(models: dict[str, list[str]], input_dir: str) -> dict[str, Any]:
    out = dict(base_object_info())
    for class_name in list(_patch_points()) + list(IMAGE_INPUT_CLASSES):
        out[class_name] = class_info(class_name, models, input_dir)
    return out
