"""Input files: bytes given by a caller become a content-addressed CachedFile, delivered to nodes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

import redis
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image, UnidentifiedImageError
from redis.exceptions import LockError
from redis.lock import Lock

from comfyrouter.redisconn import redis_client
from generations import cache, downloads
from generations.models import CachedFile
from nodes.comfy import ComfyClient, ComfyError
from nodes.dispatch import model_folder
from nodes.models import Node
from workflows_app.params import EndpointParams, Param
from workflows_app.render import InputError

# Decoded formats ComfyUI's LoadImage reads, and the extension a node file gets for each.
IMAGE_FORMATS = {
    "PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"), "BMP": ("bmp", "image/bmp"), "TIFF": ("tiff", "image/tiff"),
}  # fmt: skip
MAX_PIXELS = 8192 * 8192
MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
# Another URL that gave the same bytes is remembered this long (the row keeps the first URL).
URL_ALIAS_SECONDS = 7 * 24 * 3600
FAILURE_SECONDS = 10
_URL = re.compile(r"^https?://", re.IGNORECASE)


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
    cache.cache_evict(keep=[entry.id])
    return entry


def _touch(digest: str) -> CachedFile | None:
    if CachedFile.objects.filter(sha256=digest).update(last_used_at=timezone.now(), hits=F("hits") + 1):
        return CachedFile.objects.get(sha256=digest)
    return None


def node_filename(entry: CachedFile) -> str:
    """The name a file gets on every node: its hash, so a node holding it already keeps one copy."""
    extension = entry.file.name.rsplit(".", 1)[-1]
    return f"cr-{entry.sha256}.{extension}"


def resolve_files(
    params: EndpointParams, values: Mapping[str, Any], *, graph: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[CachedFile]]:
    """Fetch every file input (base64 or URL) and put the name it will have on the node in its place.

    Model COMBO inputs given by URL are placed in COMFYROUTER_MODELS_DIR; `graph` tells their loader
    class (without it, the input name alone picks the models folder).
    """
    resolved, entries, problems = dict(values), [], []
    for param in params.inputs:
        value = values.get(param.field)
        folder = _model_folder(param, value, graph)
        if value is None or not (param.spec.is_file or folder):
            continue
        try:
            if folder:
                resolved[param.field] = model_file(value, field=param.field, folder=folder)
                continue
            entry = _fetch(param.field, value)
        except FileInputError as exc:
            problems.append(exc.problem)
            continue
        entries.append(entry)
        resolved[param.field] = node_filename(entry)
    if problems:
        raise InputError(problems)
    return resolved, entries


def _model_folder(param: Param, value: Any, graph: Mapping[str, Any] | None) -> str | None:
    if param.spec.type != "COMBO" or not isinstance(value, str) or not _URL.match(value):
        return None
    node = (graph or {}).get(param.node_id)
    return model_folder(node.get("class_type") if isinstance(node, Mapping) else None, param.widget)


def _fetch(field: str, value: Any) -> CachedFile:
    if isinstance(value, Mapping):
        return cached_file(data=decode_base64(value, field=field), field=field, name=str(value.get("name", "")))
    if not isinstance(value, str):
        raise FileInputError(field, "must be an http(s) URL or a base64 file object")
    return cached_url(value, field=field)


def cached_url(url: str, *, field: str) -> CachedFile:
    """The cache entry of an image URL, downloaded once however many requests ask for it at the same time."""
    if entry := _touch_url(url):
        return entry
    with url_lock(url, field=field):
        # Whoever held the lock has probably just stored it.
        if entry := _touch_url(url):
            return entry
        buffer = io.BytesIO()
        download = _download(url, buffer, field=field, limit=settings.COMFYROUTER_MAX_DOWNLOAD_BYTES)
        entry = cached_file(data=buffer.getvalue(), field=field, name=download.name, source_url=url)
    _remember_url(url, entry.sha256)
    return entry


def _download(
    url: str, sink: BinaryIO, *, field: str, limit: int, seconds: float | None = None
) -> downloads.Download:
    try:
        return downloads.fetch(url, sink, limit=limit, seconds=seconds)
    except downloads.DownloadRefused as exc:
        raise FileInputError(field, f"URL not fetched: {exc}") from None


def _touch_url(url: str) -> CachedFile | None:
    # Freshness rule: a URL once fetched is served from the cache until its file is evicted.
    digest = CachedFile.objects.filter(source_url=url).values_list("sha256", flat=True).first()
    if digest is None:
        # The same bytes came earlier from another URL (or as base64): the row keeps the first source.
        with suppress(redis.RedisError):
            digest = (redis_client().get(_url_key(url)) or b"").decode() or None
    return _touch(digest) if digest else None


def _remember_url(url: str, digest: str) -> None:
    with suppress(redis.RedisError):
        redis_client().set(_url_key(url), digest, ex=URL_ALIAS_SECONDS)


def _url_key(url: str) -> str:
    return "comfyrouter:url-file:" + hashlib.sha256(url.encode()).hexdigest()


@contextmanager
def url_lock(url: str, *, field: str, seconds: float | None = None) -> Iterator[None]:
    """Hold the download of `url` (expected to last at most `seconds`): a Redis lock shared by every process."""
    key = hashlib.sha256(url.encode()).hexdigest()
    wait = (seconds or settings.COMFYROUTER_DOWNLOAD_DEADLINE) + settings.COMFYROUTER_DOWNLOAD_TIMEOUT * 2
    lock = Lock(redis_client(), f"comfyrouter:download:{key}", timeout=wait + 30, blocking_timeout=wait)
    try:
        acquired = lock.acquire()
    except redis.RedisError:
        # Without Redis the worst case is a duplicate download, never a refused input.
        acquired = False
    try:
        _raise_recent_failure(key, field)
        try:
            yield
        except FileInputError as exc:
            _note_failure(key, exc.reason)
            raise
    finally:
        if acquired:
            with suppress(redis.RedisError, LockError):
                lock.release()


# Requests queued behind the lock of a URL that just failed (slow, refused, not an image) fail with the
# same reason instead of each retrying it in turn.
def _raise_recent_failure(key: str, field: str) -> None:
    with suppress(redis.RedisError):
        if reason := redis_client().get(f"comfyrouter:download-failed:{key}"):
            raise FileInputError(field, reason.decode())


def _note_failure(key: str, reason: str) -> None:
    with suppress(redis.RedisError):
        redis_client().set(f"comfyrouter:download-failed:{key}", reason, ex=FAILURE_SECONDS)


def model_file(url: str, *, field: str, folder: str) -> str:
    """Download a model file by URL into COMFYROUTER_MODELS_DIR/<folder>; returns the name the prompt uses."""
    if not settings.COMFYROUTER_MODELS_DIR:
        raise FileInputError(
            field, "model files by URL need COMFYROUTER_MODELS_DIR (a models directory shared with the "
            "nodes), which this server does not set; name an installed model instead",
        )  # fmt: skip
    directory = Path(settings.COMFYROUTER_MODELS_DIR) / folder
    prefix = "cr-" + hashlib.sha256(url.encode()).hexdigest()[:16] + "-"
    if existing := _model_on_disk(directory, prefix):
        return existing
    with url_lock(url, field=field, seconds=settings.COMFYROUTER_MODEL_DOWNLOAD_DEADLINE):
        if existing := _model_on_disk(directory, prefix):
            return existing
        directory.mkdir(parents=True, exist_ok=True)
        name = _place_model(url, directory, prefix, field=field)
    _announce_model(folder, name)
    return name


def _announce_model(folder: str, name: str) -> None:
    # The directory is shared, so every node has the file now; the scheduler reads the nodes' model lists
    # (refreshed by health checks only every minute) and would otherwise find the job unrunnable.
    with transaction.atomic():
        for node in Node.objects.select_for_update().filter(enabled=True):
            health = node.health if isinstance(node.health, dict) else {}
            models = health.get("models") if isinstance(health.get("models"), dict) else None
            if models is not None and name not in models.get(folder, []):
                models[folder] = [*models.get(folder, []), name]
                Node.objects.filter(id=node.id).update(health=health)


def _model_on_disk(directory: Path, prefix: str) -> str | None:
    return next((path.name for path in directory.glob(prefix + "*") if path.is_file()), None)


def _place_model(url: str, directory: Path, prefix: str, *, field: str) -> str:
    # A hidden ".part" name: ComfyUI lists model folders by extension, so a partial file never shows.
    handle, partial = tempfile.mkstemp(dir=directory, prefix=".cr-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as sink:
            download = _download(url, sink, field=field, limit=settings.COMFYROUTER_MAX_MODEL_BYTES,
                                 seconds=settings.COMFYROUTER_MODEL_DOWNLOAD_DEADLINE)  # fmt: skip
        if not download.name.lower().endswith(MODEL_EXTENSIONS):
            raise FileInputError(field, f"{download.name} is not a model file ({', '.join(MODEL_EXTENSIONS)})")
        final = directory / (prefix + download.name)
        os.replace(partial, final)
        return final.name
    finally:
        with suppress(FileNotFoundError):
            os.unlink(partial)


def files_on_node(node: Node, client: ComfyClient) -> set[str]:
    """Names of our files a node holds: remembered, else read from its LoadImage choices and remembered."""
    if (known := cache.node_files(node)) is not None:
        return known
    try:
        info = client.object_info_for("LoadImage") or {}
    except ComfyError:
        return set()
    spec = ((info.get("input") or {}).get("required") or {}).get("image") or [[]]
    # Two shapes: [[choices], {...}] and the newer ["COMBO", {"options": [choices]}].
    choices = spec[1].get("options", []) if spec[0] == "COMBO" and len(spec) > 1 else spec[0]
    names = {name for name in choices if isinstance(name, str) and name.startswith("cr-")}
    cache.node_files_add(node, names)
    return names
