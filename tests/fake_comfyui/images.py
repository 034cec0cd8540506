"""Real image bytes: output PNGs, 512x512 JPEG sampler previews and binary WS frames."""

from __future__ import annotations

import functools
import io
import json
import random
import string
import struct
from typing import Any

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

PREVIEW_SIZE = 512  # ComfyUI scales previews to --preview-size, default 512 (README §8.2)
EVENT_PREVIEW_IMAGE = 1
EVENT_TEXT = 3
EVENT_PREVIEW_IMAGE_WITH_METADATA = 4
FORMAT_JPEG = 1


def rgb(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def write_png(
    path: str, size: tuple[int, int], color: int, metadata: dict[str, Any], compress_level: int = 4
) -> None:
    """A solid-colour RGB PNG with ComfyUI's tEXt chunks (`prompt`, `workflow`...) (README §7).

    SaveImage compresses at level 4, PreviewImage at 1: the recorded temp file is larger (597 vs 520 B).
    """
    width, height = size
    image = Image.new("RGB", (max(width, 1), max(height, 1)), rgb(color))
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, json.dumps(value))
    image.save(path, format="PNG", pnginfo=info, compress_level=compress_level)


def temp_prefix() -> str:
    # PreviewImage's random 5-letter suffix (README §4: jsgmu, iqipv, iflqs, ptpby).
    return "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))


@functools.lru_cache(maxsize=256)
def preview_jpeg(step: int, steps: int) -> bytes:
    """A 512x512 JPEG that visibly changes with the step: hue shift plus the step number."""
    fraction = step / max(steps, 1)
    gradient = Image.linear_gradient("L").resize((PREVIEW_SIZE, PREVIEW_SIZE))
    red = gradient.point(lambda v: int(v * (1 - fraction)))
    green = gradient.rotate(90).point(lambda v: int(v * fraction))
    blue = Image.new("L", (PREVIEW_SIZE, PREVIEW_SIZE), int(255 * fraction))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    draw.rectangle((16, 16, 16 + int((PREVIEW_SIZE - 32) * fraction), 48), fill=(255, 255, 255))
    draw.text((24, 60), f"step {step}/{steps}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def preview_frame(jpeg: bytes) -> bytes:
    """Binary type 1: event, image format 1 (JPEG), JPEG bytes (ws/m_ksampler_warm)."""
    return struct.pack(">II", EVENT_PREVIEW_IMAGE, FORMAT_JPEG) + jpeg


def preview_frame_with_metadata(jpeg: bytes, node_id: str, prompt_id: str) -> bytes:
    """Binary type 4: event, metadata length, json.dumps metadata, JPEG (ws/m_ksampler_type4)."""
    metadata = {
        "node_id": node_id,
        "prompt_id": prompt_id,
        "display_node_id": node_id,
        "parent_node_id": None,
        "real_node_id": node_id,
        "image_type": "image/jpeg",
    }
    raw = json.dumps(metadata).encode()
    return struct.pack(">II", EVENT_PREVIEW_IMAGE_WITH_METADATA, len(raw)) + raw + jpeg


def text_frame(node_id: str, text: str) -> bytes:
    """Binary type 3: event, u32 node-id length, node id, text (ws/g_binary_text_frame)."""
    node = node_id.encode()
    return struct.pack(">II", EVENT_TEXT, len(node)) + node + text.encode()


def image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size
