"""The aiohttp application: middlewares, ComfyUI routes, /_fake control routes, the catch-all 404."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .routes import ComfyRoutes
from .runtime import Runtime

if TYPE_CHECKING:
    from .server import FakeComfyUI

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTROL_PREFIX = "/_fake/"


def _is_loopback(hostname: str | None) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname or "").is_loopback
    except ValueError:
        return False


def _origin_mismatch(request: web.Request) -> bool:
    """ComfyUI's origin_only_middleware (http/post_prompt_origin_mismatch.json)."""
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    if host is None or origin is None:
        return False
    host = host.lower()
    hostname = urllib.parse.urlsplit("//" + host).hostname
    return _is_loopback(hostname) and host != urllib.parse.urlparse(origin).netloc.lower()


def build_app(fake: FakeComfyUI, rt: Runtime) -> web.Application:
    @web.middleware
    async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
        fake.track_transport(request.transport)
        rt.stats.log_request(request.method, request.path)
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)  # control routes ignore require_token and faults
        if _origin_mismatch(request):
            return web.Response(status=403)
        await rt.wait_until_ready()
        token = rt.knobs.require_token
        if token and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401)
        if request.method == "OPTIONS":
            return web.Response()  # OPTIONS answers 200 empty, no CORS headers (http/options_prompt.json)
        return await handler(request)

    app = web.Application(middlewares=[front_door], client_max_size=110 * 1024 * 1024)
    comfy = ComfyRoutes(rt)
    for method, path, handler in comfy.table():
        for prefix in ("", "/api"):
            if method == "GET":
                app.router.add_get(prefix + path, handler)  # GET routes answer HEAD too (get_view_cases.json)
            else:
                app.router.add_route(method, prefix + path, handler)
    control = ControlRoutes(fake)
    app.router.add_get("/_fake/stats", control.stats)
    app.router.add_post("/_fake/configure", control.configure)
    app.router.add_post("/_fake/crash", control.crash)
    app.router.add_post("/_fake/restart", control.restart)
    app.router.add_post("/_fake/reset_stats", control.reset_stats)
    # ComfyUI's static '/' route answers unknown GET paths (and GET /interrupt) with an empty
    # application/octet-stream 404 (http/misc_status_codes.json).
    app.router.add_get("/{tail:.*}", _not_found)
    return app


async def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, content_type="application/octet-stream")


class ControlRoutes:
    """/_fake/*: drive a fake running in another process (tests, benchmarks)."""

    def __init__(self, fake: FakeComfyUI) -> None:
        self.fake = fake

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.fake.describe(), dumps=_dumps)

    async def configure(self, request: web.Request) -> web.Response:
        knobs = await request.json()
        try:
            self.fake.knobs_lock_update(knobs)
        except (TypeError, ValueError) as ex:
            return web.json_response({"error": str(ex)}, status=400)
        return web.json_response({"ok": True, "knobs": self.fake.knob_values()}, dumps=_dumps)

    async def crash(self, request: web.Request) -> web.Response:
        body = await _optional_json(request)
        # Answer first, then drop every connection (this one included) a moment later.
        asyncio.get_running_loop().call_later(0.05, self.fake.crash_in_loop, body.get("restart_after"))
        return web.json_response({"ok": True})

    async def restart(self, request: web.Request) -> web.Response:
        asyncio.get_running_loop().call_later(0.05, self.fake.crash_in_loop, 0.0)
        return web.json_response({"ok": True})

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.fake.reset_stats()
        return web.json_response({"ok": True})


async def _optional_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    return body if isinstance(body, dict) else {}


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
