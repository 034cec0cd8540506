"""Real image bytes: output PNGs, 512x512 JPEG sampler previews and binary WS frames."""

from __future__ import annotations

import functools
import io
import json
import random
import string
import struct
import zlib
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
    path: str,
    size: tuple[int, int],
    color: int,
    metadata: dict[str, Any],
    compress_level: int = 4,
    *,
    exact: bool = True,
) -> None:
    """A solid-colour RGB PNG with ComfyUI's tEXt chunks (`prompt`, `workflow`...) (README §7).

    SaveImage compresses at level 4, PreviewImage at 1: the recorded temp file is larger (597 vs 520 B).
    `exact`: Pillow writes it, as ComfyUI does, byte for byte; else fast_png() writes the same image.
    """
    width, height = max(size[0], 1), max(size[1], 1)
    if not exact:
        with open(path, "wb") as fh:
            fh.write(fast_png(width, height, rgb(color), metadata, compress_level))
        return
    image = Image.new("RGB", (width, height), rgb(color))
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, json.dumps(value))
    image.save(path, format="PNG", pnginfo=info, compress_level=compress_level)


def fast_png(width: int, height: int, pixel: tuple[int, int, int], metadata: dict[str, Any], level: int) -> bytes:
    """The PNG of a solid image: the same chunks, pixels and text as Pillow's, deflated differently, in 0.15 ms
    instead of Pillow's 3 ms at 512x512 (for benchmarks, where the fakes share the router's cores)."""
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]  # 8-bit RGB
    # Pillow writes text that latin-1 can hold as tEXt; json.dumps writes ASCII.
    chunks += [
        _chunk(b"tEXt", key.encode("latin-1") + b"\0" + json.dumps(value).encode())
        for key, value in metadata.items()
    ]
    chunks += [_chunk(b"IDAT", _solid_idat(width, height, pixel, level)), _chunk(b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(chunks)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _solid_idat(width: int, height: int, pixel: tuple[int, int, int], level: int) -> bytes:
    """The zlib stream of a solid image's scanlines, filtered as PNG encoders do: the first row `Sub` (its
    first pixel, then zero differences), every other row `Up` (all zeros). Only the first row depends on the
    colour, so the other rows are deflated once per size: a 512x512 file costs 0.1 ms, not Pillow's 3 ms."""
    first = bytes((1, *pixel)) + bytes(3 * width - 3)
    head = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate; ends byte-aligned, not final
    body = head.compress(first) + head.flush(zlib.Z_FULL_FLUSH)
    rest, rest_adler = _up_rows(width, height, level)
    adler = _adler32_combine(zlib.adler32(first), rest_adler, (3 * width + 1) * (height - 1))
    return b"\x78\x5e" + body + rest + struct.pack(">I", adler)  # zlib header: deflate, 32K window


@functools.lru_cache(maxsize=32)
def _up_rows(width: int, height: int, level: int) -> tuple[bytes, int]:
    """Rows 2..height of a solid image (`Up` filter, zero differences), raw-deflated to the final block."""
    rows = (b"\x02" + bytes(3 * width)) * (height - 1)
    tail = zlib.compressobj(level, zlib.DEFLATED, -15)
    return tail.compress(rows) + tail.flush(zlib.Z_FINISH), zlib.adler32(rows)


def _adler32_combine(adler1: int, adler2: int, length2: int) -> int:
    """The Adler-32 of two byte strings one after the other, from each one's and the second's length (zlib's
    adler32_combine)."""
    base = 65521
    remainder = length2 % base
    sum1 = adler1 & 0xFFFF
    sum2 = (remainder * sum1) % base
    sum1 = (sum1 + (adler2 & 0xFFFF) + base - 1) % base
    sum2 = (sum2 + (adler1 >> 16) + (adler2 >> 16) + base - remainder) % base
    return (sum2 << 16) | sum1


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
