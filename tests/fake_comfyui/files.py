"""GET /view and POST /upload/image with ComfyUI's path rules.

Rules from http/get_view_cases.json and http/post_upload_image_cases.json.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
from typing import Any

from aiohttp import web
from PIL import Image

from .runtime import Runtime
from .validation import annotated_path

FORCED_DOWNLOAD = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}


def _resolve_view(rt: Runtime, query: Any) -> str | web.Response:
    dirs = rt.dirs.as_dict()
    filename, directory = annotated_path(query["filename"], dirs)
    if not filename or filename[0] == "/" or ".." in filename:
        return web.Response(status=400)
    if directory is None:
        directory = dirs.get(query.get("type", "output"))
    if directory is None:
        return web.Response(status=400)  # type=bogus: 400 here, 500 on upload
    if "subfolder" in query:
        full = os.path.join(directory, query["subfolder"])
        if os.path.commonpath((os.path.abspath(full), directory)) != directory:
            return web.Response(status=403)
        directory = full
    filename = os.path.basename(filename)
    path = os.path.join(directory, filename)
    return path if os.path.isfile(path) else web.Response(status=404)


async def view(rt: Runtime, request: web.Request) -> web.StreamResponse:
    query = request.rel_url.query
    if "filename" not in query:
        return web.Response(status=404)
    resolved = _resolve_view(rt, query)
    if isinstance(resolved, web.Response):
        return resolved
    filename = os.path.basename(resolved)
    headers = {"Content-Disposition": f'filename="{filename}"'}
    if "preview" in query or query.get("channel") in ("rgb", "a"):
        body, content_type = _converted(resolved, query)
        return web.Response(body=body, content_type=content_type, headers=headers)
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if content_type in FORCED_DOWNLOAD:
        content_type = "application/octet-stream"
    return web.FileResponse(resolved, headers={**headers, "Content-Type": content_type})


def _converted(path: str, query: Any) -> tuple[bytes, str]:
    """preview=<fmt>;<quality> and channel=rgb|a conversions of /view."""
    buffer = io.BytesIO()
    with Image.open(path) as img:
        if "preview" in query:
            info = query["preview"].split(";")
            fmt = info[0] if info[0] in ("webp", "jpeg") and "a" not in query.get("channel", "") else "webp"
            quality = int(info[-1]) if info[-1].isdigit() else 90
            if fmt == "jpeg" or query.get("channel") == "rgb":
                img = img.convert("RGB")
            img.save(buffer, format=fmt, quality=quality)
            return buffer.getvalue(), f"image/{fmt}"
        if query["channel"] == "rgb":
            img.convert("RGB").save(buffer, format="PNG")
        else:
            alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
            out = Image.new("RGBA", img.size)
            out.putalpha(alpha)
            out.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def _upload_dir(rt: Runtime, kind: Any) -> tuple[str, str]:
    if kind is None:
        return rt.dirs.input, "input"
    # An unknown type leaves ComfyUI's variable unbound -> exception -> 500 (post_upload_image_cases.json).
    return rt.dirs.as_dict()[str(kind)], str(kind)


async def upload_image(rt: Runtime, request: web.Request) -> web.Response:
    post = await request.post()
    image = post.get("image")
    upload_dir, kind = _upload_dir(rt, post.get("type"))
    if not image:
        return web.Response(status=400)
    content = image.file.read()  # an empty filename arrives as str -> AttributeError -> 500
    filename = image.filename
    if not filename:
        return web.Response(status=400)
    subfolder = str(post.get("subfolder", ""))
    folder = os.path.join(upload_dir, os.path.normpath(subfolder))
    path = os.path.abspath(os.path.join(folder, filename))
    if os.path.commonpath((upload_dir, path)) != upload_dir:
        return web.Response(status=400)
    os.makedirs(folder, exist_ok=True)
    filename, path, duplicate = _free_name(folder, filename, path, content, post.get("overwrite"))
    if not duplicate:
        with open(path, "wb") as f:
            f.write(content)
    with rt.stats.lock:
        rt.stats.uploads.append({"name": filename, "subfolder": subfolder, "type": kind, "size": len(content)})
    return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})


def _free_name(folder: str, filename: str, path: str, content: bytes, overwrite: Any) -> tuple[str, str, bool]:
    """Same bytes -> same name, no write; other bytes -> 'name (1).ext', 'name (2).ext'..."""
    if overwrite in ("true", "1"):
        return filename, path, False
    stem, ext = os.path.splitext(filename)
    digest = hashlib.sha256(content).hexdigest()
    index = 1
    while os.path.exists(path):
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() == digest:
                return filename, path, True
        filename = f"{stem} ({index}){ext}"
        path = os.path.join(folder, filename)
        index += 1
    return filename, path, False
