"""A blocking WebSocket client that its caller's thread reads: websockets' Sans-I/O protocol over a socket.

websockets' own sync client starts two threads per connection (one reads frames, one sends pings)
and hands every frame from its reader thread to the caller through a queue. An executor follows one
prompt on one socket from one thread, so here that thread reads the socket itself: a job costs no
thread start and a frame no hand-over between threads (45 → 20 µs of CPU per frame, measured with
frames 1 ms apart). Pings are not needed: a silent node is noticed by the idle timeout and a look at
its /history (ComfyClient.follow), a dropped one by the end of the stream.

One thread reads; any thread may close (the executor's heartbeat does, to stop a job it lost): the
close wakes a blocked read at once.

Frames are read here while they are what ComfyUI sends: whole, unmasked text and binary frames. A prompt
brings about 80 of them (progress, previews), and websockets' parser, a chain of generators, spent 10 µs on
each. The first frame of any other kind (a fragment, a ping, a close, one over max_size) and everything after
it go to websockets' protocol, which handles all of them. The handshake's answer is given to the protocol
alone, so that it stops at the first frame.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Mapping
from typing import cast

from websockets.client import ClientProtocol
from websockets.frames import OK_CLOSE_CODES, Frame, Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import State
from websockets.proxy import get_proxy, parse_proxy
from websockets.sync.client import SSLSSLSocket, connect_http_proxy
from websockets.sync.utils import Deadline
from websockets.uri import WebSocketURI, parse_uri

RECV_BYTES = 256 * 1024
MIN_WAIT = 0.001  # seconds a read waits at least: recv(0) still takes what has arrived
HEAD_END = b"\r\n\r\n"
TEXT, BINARY = 1, 2  # opcodes


class SocketClosed(Exception):
    """The connection is over; `clean`: by a normal close (the server's close frame, or our close())."""

    def __init__(self, message: str, clean: bool) -> None:
        super().__init__(message)
        self.clean = clean


class NodeSocket:
    """One client WebSocket connection: recv() messages (str or bytes), send_text(), close()."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, max_size: int | None) -> None:
        self.sock = sock
        self.protocol = protocol
        self.max_size = max_size
        self.fast = False  # frames are read here (see the module's docstring): from the handshake's end
        self.buffer = bytearray()  # received, not read yet: the start of a frame (fast mode)
        self.messages: collections.deque[str | bytes] = collections.deque()
        self.fragments: list[bytes] = []
        self.fragments_text = False
        self.closed = False  # by close(), here
        self.ended: tuple[str, bool] | None = None  # why the connection is over (_end), once it is
        self.lock = threading.RLock()  # the protocol's state: the reading thread and close() share it

    @classmethod
    def connect(cls, url: str, *, headers: Mapping[str, str], timeout: float, max_size: int) -> NodeSocket:
        """Open `url` (ws:// or wss://; through the environment's HTTP proxy if it names one for the host)
        and complete the handshake. Raises OSError, TimeoutError or websockets' handshake errors
        (InvalidStatus for a refused handshake)."""
        uri = parse_uri(url)
        deadline = Deadline(timeout)
        sock = _open(uri, deadline)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            if uri.secure:
                sock.settimeout(deadline.timeout())
                if isinstance(sock, ssl.SSLSocket):  # an HTTPS proxy: TLS inside its TLS, as websockets does
                    sock = cast(socket.socket, SSLSSLSocket(sock, _tls(), server_hostname=uri.host))
                else:
                    sock = _tls().wrap_socket(sock, server_hostname=uri.host)
            connection = cls(sock, ClientProtocol(uri, max_size=max_size), max_size)
            connection._handshake(headers, deadline)
        except BaseException:
            sock.close()
            raise
        return connection

    def _handshake(self, headers: Mapping[str, str], deadline: Deadline) -> None:
        request = self.protocol.connect()
        request.headers.update(headers)
        request.headers.setdefault("User-Agent", USER_AGENT)
        with self.lock:
            self.protocol.send_request(request)
            self._flush()
        head = bytearray()
        while (end := head.find(HEAD_END)) < 0 and (data := self._recv(deadline.timeout())):
            head += data
        with self.lock:
            if end < 0:  # the connection ended first: the protocol says how
                self.protocol.receive_data(bytes(head))
                self.protocol.receive_eof()
            else:
                self.protocol.receive_data(bytes(head[: end + len(HEAD_END)]))
                if self.protocol.state is State.OPEN:
                    self.fast, self.buffer = True, head[end + len(HEAD_END) :]
                    self._read_frames()
                else:  # a refusal's body, for the protocol to read
                    self.protocol.receive_data(bytes(head[end + len(HEAD_END) :]))
            self._protocol_done()
        # Until the handshake's answer: OPEN, or a handshake_exc (a refusal leaves the protocol CONNECTING).
        while self.protocol.state is State.CONNECTING and self.protocol.handshake_exc is None:
            self._pump(deadline.timeout())
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc

    def recv(self, timeout: float) -> str | bytes:
        """The next message; TimeoutError after `timeout` s without one, SocketClosed once the connection ends
        (messages that arrived before the end are returned first)."""
        deadline = time.monotonic() + timeout
        tried = False  # what already arrived is read even with no time left
        while not self.messages:
            self._raise_if_over()
            remaining = deadline - time.monotonic()
            if remaining <= 0 and tried:
                raise TimeoutError(f"no message in {timeout:g} s")
            self._pump(max(remaining, MIN_WAIT))
            tried = True
        return self.messages.popleft()

    def discard_pending(self) -> bool:
        """For a connection that sat idle: read and drop what arrived meanwhile, without waiting; whether the
        connection is still open."""
        try:
            while self._end() is None and self._readable():
                self._pump(MIN_WAIT)
        except (OSError, ValueError, TimeoutError):  # ValueError: select() on a socket closed meanwhile
            self.close()
        self.messages.clear()
        return self._end() is None

    def _readable(self) -> bool:
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        return bool(select.select([self.sock], [], [], 0)[0])

    def send_text(self, text: str) -> None:
        with self.lock:
            self._raise_if_over()
            self.protocol.send_text(text.encode())
            self._flush()

    def close(self) -> None:
        """Send a close frame and end the connection without waiting for the server's; any thread."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(1000)
                with contextlib.suppress(OSError):
                    self._flush()
        # Wakes a read blocked in another thread (closing alone would not).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _recv(self, timeout: float) -> bytes:
        """What arrived (waiting up to `timeout` s, else TimeoutError); b"" once the connection has ended."""
        try:
            self.sock.settimeout(timeout)
            return self.sock.recv(RECV_BYTES)
        except TimeoutError:
            raise
        except OSError:
            return b""  # reset, or closed by close() in another thread: the end of the stream

    def _pump(self, timeout: float) -> None:
        """One read from the socket: its frames read, or fed to the protocol; what that answers (pongs, a
        close) is sent."""
        data = self._recv(timeout)
        with self.lock:
            if self.closed:
                return
            if self.fast:
                self.buffer += data
                self._read_frames()
                if self.fast and data:
                    return
                self._hand_over()  # the end: a partial frame is the protocol's to report
            elif data:
                self.protocol.receive_data(data)
            if not data:
                self.protocol.receive_eof()
            self._protocol_done()

    def _protocol_done(self) -> None:
        """Take the frames the protocol read; send what it answers (pongs, a close)."""
        for event in self.protocol.events_received():
            if not isinstance(event, Response):  # the handshake's answer: the protocol checked it
                self._frame(event)
        with contextlib.suppress(OSError):  # a peer gone: the next read ends the stream
            self._flush()

    def _read_frames(self) -> None:
        """Take the whole text and binary frames at the start of the buffer; hand the rest to the protocol
        from the first frame of another kind."""
        buffer, pos, other = self.buffer, 0, False
        while len(buffer) - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            opcode, length, start = first & 0x0F, second & 0x7F, pos + 2
            if first & 0xF0 != 0x80 or opcode not in (TEXT, BINARY) or second & 0x80:  # FIN, no RSV, no mask
                other = True
                break
            if length >= 126:
                start += 2 if length == 126 else 8
                if len(buffer) < start:
                    break
                (length,) = struct.unpack_from(">H" if start - pos == 4 else ">Q", buffer, pos + 2)
            if self.max_size is not None and length > self.max_size:
                other = True
                break
            if len(buffer) < start + length:
                break
            data = bytes(buffer[start : start + length])
            self.messages.append(data.decode("utf-8", "replace") if opcode == TEXT else data)
            pos = start + length
        del buffer[:pos]
        if other:
            self._hand_over()

    def _hand_over(self) -> None:
        """From here on the protocol reads every frame, starting with what is buffered."""
        self.fast = False
        if self.buffer:
            self.protocol.receive_data(bytes(self.buffer))
            self.buffer.clear()

    def _frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.BINARY:
            self.fragments, self.fragments_text = [frame.data], frame.opcode is Opcode.TEXT
        elif frame.opcode is Opcode.CONT:
            self.fragments.append(frame.data)
        else:
            return  # ping (the protocol queued the pong), pong, close (the protocol keeps it)
        if frame.fin:
            data = b"".join(self.fragments)
            self.fragments = []
            self.messages.append(data.decode("utf-8", "replace") if self.fragments_text else data)

    def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.sock.sendall(data)

    def _raise_if_over(self) -> None:
        if self.ended is None:
            self.ended = self._end()
            if self.ended is not None and not self.closed:
                self.close()  # the server half-closed the connection and waits for us to close ours
        if self.ended is not None:
            raise SocketClosed(*self.ended)

    def _end(self) -> tuple[str, bool] | None:
        """Why the connection is over, and whether that is a normal close; None while it is open."""
        protocol = self.protocol
        if self.closed:
            return "closed here", True
        if protocol.close_rcvd is not None:
            code = protocol.close_rcvd.code
            return f"closed by the server (code {code})", code in OK_CLOSE_CODES
        if isinstance(protocol.parser_exc, EOFError) or (protocol.state is State.CLOSED):
            return "the connection dropped without a close frame (code 1006)", False
        if protocol.parser_exc is not None:
            return f"protocol error: {protocol.parser_exc}", False
        return None


def _open(uri: WebSocketURI, deadline: Deadline) -> socket.socket:
    """A TCP connection to the server, or through the HTTP(S) proxy the environment names for it."""
    proxy = _proxy_for(uri.secure, uri.host, uri.port)
    if proxy is None:
        return socket.create_connection((uri.host, uri.port), timeout=deadline.timeout())
    parsed = parse_proxy(proxy)
    if not parsed.scheme.startswith("http"):
        raise OSError(
            f"proxy {proxy} (from the environment) is not an HTTP(S) proxy, the only kind node sockets can use: "
            f"set an http:// one, or add {uri.host} to NO_PROXY"
        )
    return connect_http_proxy(parsed, uri, deadline)


@functools.lru_cache(maxsize=256)
def _proxy_for(secure: bool, host: str, port: int) -> str | None:
    # The environment (WS_PROXY, HTTPS_PROXY, NO_PROXY ...) as websockets reads it; looked up once per node
    # and process, as get_proxy parses it afresh on every call.
    return get_proxy(parse_uri(f"{'wss' if secure else 'ws'}://{host}:{port}/"))


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # loads the CA bundle: once per process
