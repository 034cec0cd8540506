"""A lean HTTP/1.1 load generator for the throughput bench: keep-alive connections over asyncio streams.

The bench's client shares the machine's two cores with the router and the fakes, so its CPU is taken from
theirs. httpx's async client spent 1.7–2.4 ms of CPU per request here; a load generator such as wrk spends a
few µs. This one writes each request whole and reads the status line, the headers and a Content-Length or
chunked body: what the router answers. It is not a general client (no redirects, TLS, or 1xx answers).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names; the last value of a repeated header
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, head: bytes, body: bytes) -> Answer:
        self.writer.write(head + body)
        status_line = await self.reader.readuntil(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunked()
        else:
            raise ConnectionError("an answer without Content-Length or chunked body cannot be kept alive")
        return Answer(status, headers, content)

    async def _chunked(self) -> bytes:
        chunks = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        return b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


class LoadClient:
    """`post_json` from many tasks over a pool of keep-alive connections (at most `connections` open)."""

    def __init__(self, base_url: str, *, headers: dict[str, str], connections: int) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"an http:// URL with a host, not {base_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.base_headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(connections)

    async def post_json(self, path: str, body: Any) -> Answer:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.base_headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        async with self.slots:
            connection = self.idle.pop() if self.idle else await Connection.open(self.host, self.port)
            try:
                answer = await connection.request(head, payload)
            except BaseException:
                connection.close()
                raise
            if answer.headers.get("connection", "").lower() == "close":
                connection.close()
            else:
                self.idle.append(connection)
            return answer

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        while self.idle:
            self.idle.pop().close()
