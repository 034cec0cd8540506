"""The output PNGs the fake writes (README §7) and SaveImage's file counter (README §4), without a server."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tests.fake_comfyui import images
from tests.fake_comfyui.outputs import save_images


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == images.PNG_SIGNATURE
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        at += 12 + length
    return chunks


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (64, 64), (512, 512), (7, 3)])
@pytest.mark.parametrize("color", [0x000000, 0xFFFFFF, 0x00FFFF, 0x123456])
@pytest.mark.parametrize("level", [1, 4])
@pytest.mark.parametrize("exact", [True, False], ids=["pillow", "fast"])
def test_a_written_png_is_the_solid_image_with_comfyuis_text_chunks(
    tmp_path: Path, size: tuple[int, int], color: int, level: int, exact: bool
) -> None:
    path = tmp_path / "out.png"
    metadata = {"prompt": {"3": {"class_type": "KSampler"}}, "workflow": {"title": "café"}}

    images.write_png(str(path), size, color, metadata, level, exact=exact)

    chunks = _chunks(path.read_bytes())
    assert [kind for kind, _ in chunks] == [b"IHDR", b"tEXt", b"tEXt", b"IDAT", b"IEND"]
    assert chunks[0][1] == struct.pack(">IIBBBBB", *size, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
    raw = zlib.decompress(chunks[3][1])  # checks the stream's Adler-32 too
    assert len(raw) == (3 * size[0] + 1) * size[1]
    with Image.open(path) as image:
        assert (image.size, image.mode) == (size, "RGB")
        assert image.getextrema() == tuple((value, value) for value in images.rgb(color))
        assert json.loads(image.info["prompt"]) == metadata["prompt"]
        assert json.loads(image.info["workflow"]) == metadata["workflow"]


def test_adler32_combine_matches_zlib() -> None:
    for first, second in [(b"", b""), (b"a", b""), (b"", b"b"), (os.urandom(100), os.urandom(70_000))]:
        combined = images._adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
        assert combined == zlib.adler32(first + second)


def test_the_counter_continues_over_files_added_between_saves(tmp_path: Path) -> None:
    image = {"batch": 1, "width": 8, "height": 8, "color": 0xFF0000}

    def save() -> str:
        return save_images(str(tmp_path), "proto", image, {}, "output")[0]["filename"]

    assert save() == "proto_00001_.png"
    assert save() == "proto_00002_.png"
    (tmp_path / "proto_00041_.png").write_bytes(b"")  # another writer
    assert save() == "proto_00042_.png"
    (tmp_path / "proto_00042_.png").unlink()
    (tmp_path / "proto_00041_.png").unlink()
    assert save() == "proto_00003_.png"
