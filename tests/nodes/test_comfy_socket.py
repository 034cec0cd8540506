"""NodeSocket against a real WebSocket server on a real port: what the fake ComfyUI never does on its own
(fragmented messages, pings, refused handshakes, close codes) and a close from another thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri
from websockets.utils import accept_key

from nodes import comfy_socket
from nodes.comfy_socket import NodeSocket, SocketClosed

Handler = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture
def server() -> Iterator[Callable[..., str]]:
    """start(handler, **serve_options) -> ws:// URL of a server running `handler` for each connection."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers = []

    def start(handler: Handler, **options) -> str:
        async def open_server():
            return await serve(handler, "127.0.0.1", 0, compression=None, **options)

        running = asyncio.run_coroutine_threadsafe(open_server(), loop).result(5)
        servers.append(running)
        port = running.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws?clientId=abc"

    yield start

    async def close_all():
        for running in servers:
            running.close()
            await running.wait_closed()

    asyncio.run_coroutine_threadsafe(close_all(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def proxy_env(monkeypatch):
    """Clears the per-process proxy and TLS caches around a test that sets the environment they read."""
    comfy_socket._proxy_for.cache_clear()
    comfy_socket._tls.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    comfy_socket._proxy_for.cache_clear()
    comfy_socket._tls.cache_clear()


def connect(url: str, **headers: str) -> NodeSocket:
    return NodeSocket.connect(url, headers=headers, timeout=5, max_size=1024)


def test_messages_text_and_binary_whole_or_fragmented_headers_sent(server):
    async def handler(ws):
        await ws.send(f"hello {ws.request.headers.get('Authorization')} {ws.request.path}")
        await ws.send(b"\x00\x00\x00\x01binary")
        await ws.send(["frag", "mented"])  # a fragmented text message: three frames
        await ws.send(await ws.recv())  # echo
        await asyncio.sleep(1)

    ws = connect(server(handler), Authorization="Bearer t0ken")
    assert ws.recv(5) == "hello Bearer t0ken /ws?clientId=abc"
    assert ws.recv(5) == b"\x00\x00\x00\x01binary"
    assert ws.recv(5) == "fragmented"
    ws.send_text('{"type": "feature_flags"}')
    assert ws.recv(5) == '{"type": "feature_flags"}'
    ws.close()


def test_pings_are_answered_while_reading(server):
    pongs = []

    async def handler(ws):
        started = time.monotonic()
        await (await ws.ping())  # the pong arrives only if the client answers it while reading
        pongs.append(time.monotonic() - started)
        await ws.send("after the pong")

    ws = connect(server(handler))
    assert ws.recv(5) == "after the pong"
    assert len(pongs) == 1
    ws.close()


def test_silence_is_a_timeout_and_the_connection_stays_usable(server):
    async def handler(ws):
        await asyncio.sleep(0.3)
        await ws.send("late")
        await asyncio.sleep(1)

    ws = connect(server(handler))
    with pytest.raises(TimeoutError):
        ws.recv(0.1)
    time.sleep(0.4)
    assert ws.recv(0) == "late"  # arrived meanwhile: no time left is needed to take it
    with pytest.raises(TimeoutError):
        ws.recv(0)
    ws.close()


def test_a_normal_close_by_the_server_is_clean_after_the_messages_before_it(server):
    async def handler(ws):
        await ws.send("last words")
        await ws.close(1000)

    ws = connect(server(handler))
    assert ws.recv(5) == "last words"
    with pytest.raises(SocketClosed) as closed:
        ws.recv(5)
    assert closed.value.clean
    with pytest.raises(SocketClosed, match="code 1000"):
        ws.send_text("too late")


def test_an_error_close_code_is_not_clean(server):
    async def handler(ws):
        await ws.close(1011, "internal error")

    ws = connect(server(handler))
    with pytest.raises(SocketClosed, match="code 1011") as closed:
        ws.recv(5)
    assert not closed.value.clean


def test_a_dropped_connection_is_not_clean(server):
    async def handler(ws):
        await ws.send("then silence")
        ws.transport.abort()  # no close frame: a killed server

    ws = connect(server(handler))
    assert ws.recv(5) == "then silence"
    with pytest.raises(SocketClosed, match="1006") as closed:
        ws.recv(5)
    assert not closed.value.clean


def test_a_message_over_max_size_ends_the_connection(server):
    async def handler(ws):
        await ws.send("x" * 2048)
        await asyncio.sleep(1)

    ws = connect(server(handler))
    with pytest.raises(SocketClosed, match="protocol error") as closed:
        ws.recv(5)
    assert not closed.value.clean


def test_a_refused_handshake_raises_invalid_status(server):
    def refuse(connection, request):
        return Response(403, "Forbidden", connection.protocol.reject(403, "no").headers, b"no")

    async def handler(ws):
        await ws.send("never")

    with pytest.raises(InvalidStatus) as refused:
        connect(server(handler, process_request=refuse))
    assert refused.value.response.status_code == 403


def test_close_from_another_thread_wakes_a_blocked_read_at_once(server):
    seen_close = threading.Event()

    async def handler(ws):
        try:
            await ws.wait_closed()
        finally:
            seen_close.set()

    ws = connect(server(handler))
    threading.Timer(0.2, ws.close).start()
    started = time.monotonic()
    with pytest.raises(SocketClosed) as closed:
        ws.recv(10)
    assert time.monotonic() - started < 2
    assert closed.value.clean  # closed here, on purpose
    assert seen_close.wait(5)
    ws.close()  # twice is fine


async def echo_path(ws):
    await ws.send(f"you asked for {ws.request.path}")
    await asyncio.sleep(1)


def test_wss_verifies_the_node_certificate_against_the_trusted_ones(server, proxy_env, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    url = server(echo_path, ssl=context).replace("ws://", "wss://")
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(url)  # not trusted yet
    comfy_socket._tls.cache_clear()
    proxy_env.setenv("SSL_CERT_FILE", str(cert))
    ws = connect(url)
    assert ws.recv(5) == "you asked for /ws?clientId=abc"
    ws.close()


def test_an_http_proxy_from_the_environment_is_used(server, proxy_env):
    tunnels, tunnel_closed = [], threading.Event()

    async def connect_proxy(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split()[1].decode()
        tunnels.append(target)
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source, sink):
            while data := await source.read(65536):
                sink.write(data)
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        tunnel_closed.set()

    url = server(echo_path)
    loop = asyncio.new_event_loop()
    proxy = loop.run_until_complete(asyncio.start_server(connect_proxy, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        proxy_env.setenv("ws_proxy", f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}")
        proxy_env.delenv("no_proxy", raising=False)
        proxy_env.delenv("NO_PROXY", raising=False)
        ws = connect(url)
        assert ws.recv(5) == "you asked for /ws?clientId=abc"
        ws.close()
        assert tunnels == [url.split("/")[2]]
        assert tunnel_closed.wait(5)  # the close went through the tunnel, both ways
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def opened(max_size: int | None = None) -> NodeSocket:
    """A NodeSocket past its handshake, fed by hand (its socket is never connected)."""
    protocol = ClientProtocol(parse_uri("ws://node/ws?clientId=abc"), max_size=max_size)
    key = protocol.connect().headers["Sec-WebSocket-Key"]
    protocol.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )
    assert protocol.state is State.OPEN
    ws = NodeSocket(socket.socket(), protocol, max_size)
    ws.fast = True
    return ws


def wire(*frames: Frame) -> bytes:
    return b"".join(frame.serialize(mask=False) for frame in frames)  # a server's frames are not masked


@pytest.mark.parametrize("piece", [1, 3, 1000, 1 << 20])
def test_whole_frames_of_every_length_form_are_read_however_the_reads_cut_them(piece):
    texts = ["s", "x" * 200, "é" * 40000]  # 7-bit, 16-bit and 64-bit lengths
    preview = b"\x00\x00\x00\x01" + b"j" * 70000
    data = wire(*(Frame(Opcode.TEXT, text.encode()) for text in texts), Frame(Opcode.BINARY, preview))
    ws = opened()

    for start in range(0, len(data), piece):
        ws.buffer += data[start : start + piece]
        ws._read_frames()

    assert list(ws.messages) == [*texts, preview]
    assert ws.fast
    assert not ws.buffer


def test_from_a_frame_of_another_kind_on_the_protocol_reads_every_frame():
    data = wire(
        Frame(Opcode.TEXT, b"before"),
        Frame(Opcode.PING, b"are you there"),
        Frame(Opcode.TEXT, b"after"),
        Frame(Opcode.TEXT, b"frag", fin=False),
        Frame(Opcode.CONT, b"mented"),
    )
    ws = opened()

    ws.buffer += data
    ws._read_frames()
    ws._protocol_done()

    assert list(ws.messages) == ["before", "after", "fragmented"]
    assert not ws.fast
    assert not ws.buffer


def test_a_frame_over_max_size_goes_to_the_protocol_which_refuses_it():
    ws = opened(max_size=1024)

    ws.buffer += wire(Frame(Opcode.TEXT, b"x" * 1025))
    ws._read_frames()

    assert not ws.messages
    assert not ws.fast
    assert "1025" in str(ws.protocol.parser_exc)


def test_an_idle_connection_drops_what_arrived_and_says_whether_it_is_still_open(server):
    go_on = threading.Event()

    async def handler(ws):
        await ws.send("status 1")
        await ws.send(b"\x00\x00\x00\x01stale preview")
        await asyncio.get_running_loop().run_in_executor(None, go_on.wait, 5)
        await ws.close()

    ws = connect(server(handler))
    time.sleep(0.2)  # both messages have arrived, unread

    assert ws.discard_pending()
    assert not ws.messages
    go_on.set()
    time.sleep(0.2)  # the server's close has arrived
    assert not ws.discard_pending()
    ws.close()
