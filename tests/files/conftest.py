"""A local HTTP server that serves images (and misbehaves on demand), plus the engine fixtures."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from comfyrouter.redisconn import redis_client
from tests.generations.conftest import builtin_endpoints, engine_settings, fakes, worker, worker_env  # noqa: F401


def png(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


class ImageServer:
    """Routes: path -> (status, headers, body); `delay` seconds before answering; `hits` counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.delay: dict[str, float] = {}
        self.hits: Counter[str] = Counter()
        self.hosts: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def serve(self, path: str, body: bytes, *, status: int = 200, **headers: str) -> str:
        self.routes[path] = (status, {key.replace("_", "-"): value for key, value in headers.items()}, body)
        return self.url + path

    def redirect(self, path: str, location: str) -> str:
        return self.serve(path, b"", status=302, Location=location)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.hits[path] += 1
                server.hosts.append(self.headers.get("Host", ""))
                time.sleep(server.delay.get(path, 0))
                status, headers, body = server.routes.get(path, (404, {}, b"not found"))
                self.send_response(status)
                # Content-Length "" leaves it out: the body then ends when the connection closes.
                headers = {"Content-Length": str(len(body)), **headers}
                for key, value in headers.items():
                    if value == "":
                        continue
                    self.send_header(key, value)
                self.end_headers()
                with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: a refusal test
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def start(self) -> ImageServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def image_server():
    server = ImageServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_file_keys():
    """URL aliases, download locks and node memories of earlier tests must not leak into this one."""
    client = redis_client()
    for pattern in ("comfyrouter:url-file:*", "comfyrouter:download*", "comfyrouter:node-files:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


@pytest.fixture
def allow_local(settings):
    """The local server counts as an internal source: allow it, as an operator would."""
    settings.COMFYROUTER_URL_ALLOWLIST = ["127.0.0.1"]
    return settings
