"""What a node computes in the fake: image/latent sizes and colours, nothing more.

Values are small dicts: {"kind": "image"|"latent", "width", "height", "batch", "color"}; outputs the fake
does not model (MODEL, CLIP, CONDITIONING, ...) are None. Unknown classes pass their first image or
latent input through, so any graph of object_info classes runs.
"""

from __future__ import annotations

import os
from typing import Any

from . import images
from .validation import annotated_path

GREY = 0x808080
SAMPLER_CLASSES = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}


class NodeError(Exception):
    """A runtime failure reported as execution_error (ws/c_runtime_error_*)."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


def image(width: Any, height: Any, batch: Any = 1, color: Any = GREY) -> dict[str, Any]:
    # Inputs the fake does not model (None) fall back to ComfyUI's usual defaults.
    width, height = width if width is not None else 512, height if height is not None else 512
    batch, color = batch if batch is not None else 1, color if color is not None else GREY
    return {
        "kind": "image",
        "width": int(width),
        "height": int(height),
        "batch": int(batch),
        "color": int(color),
    }


def latent(width: Any, height: Any, batch: Any = 1) -> dict[str, Any]:
    return {"kind": "latent", "width": int(width), "height": int(height), "batch": int(batch), "color": GREY}


def is_sampler(class_type: str, info: dict[str, Any]) -> bool:
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    return class_type in SAMPLER_CLASSES or ("steps" in inputs and "LATENT" in info["output"])


def _first(values: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for value in values.values():
        if isinstance(value, dict) and value.get("kind") == kind:
            return value
    return None


def _convert(value: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    if value is None:
        return None
    return {**value, "kind": kind}


def _load_image(values: dict[str, Any], dirs: dict[str, str]) -> list[Any]:
    name, directory = annotated_path(str(values.get("image", "")), dirs)
    path = os.path.join(directory or dirs["input"], name)
    try:
        width, height = images.image_size(path)
    except Exception as ex:
        # Message format of ws/c_runtime_error_loadimage (PIL.UnidentifiedImageError).
        raise NodeError("PIL.UnidentifiedImageError", f"cannot identify image file '{path}'") from ex
    loaded = image(width, height)
    return [loaded, {**loaded, "kind": "mask"}]


def _scaled(values: dict[str, Any]) -> dict[str, Any] | None:
    source = _first(values, "image")
    if source is None:
        return None
    if "scale_by" in values:
        factor = float(values["scale_by"])
        return {**source, "width": int(source["width"] * factor), "height": int(source["height"] * factor)}
    width, height = int(values.get("width", 0)), int(values.get("height", 0))
    if width == 0 and height == 0:
        return source
    width = width or max(1, source["width"] * height // max(source["height"], 1))
    height = height or max(1, source["height"] * width // max(source["width"], 1))
    return {**source, "width": width, "height": height}


def evaluate(class_type: str, info: dict[str, Any], values: dict[str, Any], dirs: dict[str, str]) -> list[Any]:
    """Output values of one node, one per output slot."""
    if class_type == "EmptyImage":
        return [image(values["width"], values["height"], values["batch_size"], values["color"])]
    if class_type.startswith("Empty") and "LATENT" in info["output"]:
        return [latent(values.get("width", 512), values.get("height", 512), values.get("batch_size", 1))]
    if class_type in ("LoadImage", "LoadImageMask"):
        return _load_image(values, dirs)[: len(info["output"])]
    if class_type == "ImageInvert":
        source = _first(values, "image")
        return [source and {**source, "color": 0xFFFFFF - source["color"]}]
    if class_type in ("ImageScale", "ImageScaleBy"):
        return [_scaled(values)]
    if class_type == "GetImageSize":
        source = _first(values, "image") or image(512, 512)
        return [source["width"], source["height"], source["batch"]]
    return [_generic_output(kind, values) for kind in info["output"]]


def _generic_output(output_type: Any, values: dict[str, Any]) -> Any:
    if output_type == "IMAGE":
        return _first(values, "image") or _convert(_first(values, "latent"), "image")
    if output_type == "LATENT":
        return _first(values, "latent") or _convert(_first(values, "image"), "latent")
    if output_type == "MASK":
        return _convert(_first(values, "image"), "mask")
    return None


def size_text(values: dict[str, Any]) -> str | None:
    """GetImageSize's text frame, byte for byte as in ws/g_binary_text_frame."""
    source = _first(values, "image")
    if source is None:
        return None
    return f"width: {source['width']}, height: {source['height']}\n batch size: {source['batch']}"


def sampler_steps(node_id: str, prompt: dict[str, Any]) -> int:
    """`steps` of the sampler, or of the nearest upstream node that has one (SamplerCustomAdvanced)."""
    queue, seen = [node_id], set()
    while queue:
        current = queue.pop(0)
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        inputs = prompt[current].get("inputs", {})
        if isinstance(inputs.get("steps"), int | float):
            return int(inputs["steps"])
        queue.extend(str(v[0]) for v in inputs.values() if isinstance(v, list) and len(v) == 2)
    return 20
