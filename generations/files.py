"""Input files: bytes given by a caller become a content-addressed CachedFile, delivered to nodes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from generations.models import CachedFile
from workflows_app.params import EndpointParams
from workflows_app.render import InputError

# Decoded formats ComfyUI's LoadImage reads, and the extension a node file gets for each.
IMAGE_FORMATS = {
    "PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"), "BMP": ("bmp", "image/bmp"), "TIFF": ("tiff", "image/tiff"),
}  # fmt: skip
MAX_PIXELS = 8192 * 8192


class FileInputError(ValueError):
    """A file input that cannot be used, with the field it came from and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @property
    def problem(self) -> dict[str, str]:
        return {"field": self.field, "value": "<file>", "rule": self.reason}


def image_format(data: bytes, *, field: str) -> tuple[str, str]:
    """(extension, content type) of an image, judged by decoding it, never by its name or header."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise FileInputError(field, f"image of {image.width}×{image.height} pixels is too large")
            image.verify()
            kind = image.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise FileInputError(
            field, "is not an image Pillow can decode (PNG, JPEG, WebP, GIF, BMP, TIFF)"
        ) from None
    if kind not in IMAGE_FORMATS:
        raise FileInputError(field, f"{kind} images are not supported")
    return IMAGE_FORMATS[kind]


def decode_base64(value: Mapping[str, Any], *, field: str) -> bytes:
    """The bytes of a `{"type": "file", "name", "content"}` input; the length is checked before decoding."""
    content = value.get("content", "")
    limit = settings.COMFYROUTER_MAX_DOWNLOAD_BYTES
    if len(content) > (limit * 4) // 3 + 4:
        raise FileInputError(field, f"is larger than the {limit}-byte limit (COMFYROUTER_MAX_DOWNLOAD_BYTES)")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise FileInputError(field, "content is not valid base64") from None


def cached_file(*, data: bytes, field: str, name: str = "", source_url: str = "") -> CachedFile:
    """Store the bytes once (by SHA-256) or touch the existing copy; returns the cache entry."""
    extension, content_type = image_format(data, field=field)
    digest = hashlib.sha256(data).hexdigest()
    if touched := _touch(digest):
        return touched
    entry = CachedFile(sha256=digest, source_url=source_url[:2000], original_name=name[:255], size=len(data),
                       content_type=content_type)  # fmt: skip
    entry.file.save(f"{digest[:2]}/{digest}.{extension}", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        # The same bytes arrived twice at once: the other request stored them; keep one copy.
        entry.file.delete(save=False)
        return _touch(digest) or CachedFile.objects.get(sha256=digest)
    return entry


def _touch(digest: str) -> CachedFile | None:
    if CachedFile.objects.filter(sha256=digest).update(last_used_at=timezone.now(), hits=F("hits") + 1):
        return CachedFile.objects.get(sha256=digest)
    return None


def node_filename(entry: CachedFile) -> str:
    """The name a file gets on every node: its hash, so a node holding it already keeps one copy."""
    extension = entry.file.name.rsplit(".", 1)[-1]
    return f"cr-{entry.sha256}.{extension}"


def resolve_files(params: EndpointParams, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[CachedFile]]:
    """Store every file input and put the name it will have on the node in its place."""
    resolved, entries, problems = dict(values), [], []
    for param in params.inputs:
        value = values.get(param.field)
        if not param.spec.is_file or value is None:
            continue
        try:
            entry = _fetch(param.field, value)
        except FileInputError as exc:
            problems.append(exc.problem)
            continue
        entries.append(entry)
        resolved[param.field] = node_filename(entry)
    if problems:
        raise InputError(problems)
    return resolved, entries


def _fetch(field: str, value: Any) -> CachedFile:
    if isinstance(value, Mapping):
        return cached_file(data=decode_base64(value, field=field), field=field, name=str(value.get("name", "")))
    raise FileInputError(field, "URL inputs are not enabled on this server; send the file as base64")
