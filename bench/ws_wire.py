"""A websocket client for the bench's subscriber processes that costs a few microseconds per
message received: an asyncio protocol that parses frames itself and hands each text message to
a callback with the moment its bytes arrived.

Why not the `websockets` client: a thousand subscribers of one job in one process cost it
~40-50 µs of CPU per message (a task woken per socket, its frame parser, its queue), ~45 ms per
change, on the same two cores as the server it measures. The harness would then measure itself.
This client only does what the subscribers need (RFC 6455): the opening handshake (with the
headers `websockets` sends, permessage-deflate offered on request), masked text frames out,
text frames in (fragmented or not, compressed when the server agreed to), ping answered with
pong, and the closing handshake.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
USER_AGENT = f"Python/{sys.version_info.major}.{sys.version_info.minor} rendertrack-bench"
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
MAX_HEADER_BYTES = 64 * 1024

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0

# (the text of a message, the time.time() at which its last bytes were received)
OnMessage = Callable[[str, float], None]


class HandshakeFailed(Exception):
    pass


class Closed(Exception):
    pass


class WireClient(asyncio.Protocol):
    def __init__(self, request: bytes, key: bytes, on_message: OnMessage) -> None:
        self._request = request
        self._expected_accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.on_message = on_message
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handshaken = False
        self._fragments: list[bytes] = []
        self._compressed = False  # the message being assembled
        self._inflate: zlib._Decompress | None = None
        self._deflate_reset = False  # server_no_context_takeover

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        at = time.time()
        self._buffer += data
        if not self._handshaken and not self._read_handshake():
            return
        self._read_frames(at)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection lost: {exc}" if exc else "connection closed"
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(reason))
        if not self.closed.done():
            self.closed.set_result(reason)

    # -- sending

    def send_text(self, text: str) -> None:
        if self.transport is None or self.transport.is_closing():
            raise Closed("the connection is closed")
        self.transport.write(_frame(TEXT, text.encode()))

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(CLOSE, struct.pack("!H", code)))

    # -- receiving

    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                self._fail(HandshakeFailed("no end to the response headers"))
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        status = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(status) < 2 or status[1] != "101":
            self._fail(HandshakeFailed(f"the server answered {head[0]!r}"))
            return False
        if headers.get("sec-websocket-accept", "").encode() != self._expected_accept:
            self._fail(HandshakeFailed("wrong Sec-WebSocket-Accept"))
            return False
        extensions = headers.get("sec-websocket-extensions", "")
        if "permessage-deflate" in extensions:
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self._deflate_reset = "server_no_context_takeover" in extensions
        self._handshaken = True
        if not self.opened.done():
            self.opened.set_result(None)
        return True

    def _read_frames(self, at: float) -> None:
        buffer = self._buffer
        while True:
            if len(buffer) < 2:
                return
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,) = struct.unpack_from("!H", buffer, 2)
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,) = struct.unpack_from("!Q", buffer, 2)
                offset = 10
            if second & 0x80:
                self._fail(Closed("the server masked a frame"))
                return
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            self._frame(first, payload, at)

    def _frame(self, first: int, payload: bytes, at: float) -> None:
        opcode = first & 0x0F
        final = bool(first & 0x80)
        if opcode == PING:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(_frame(PONG, payload))
            return
        if opcode == PONG:
            return
        if opcode == CLOSE:
            self.close()
            if self.transport is not None:
                self.transport.close()
            return
        if opcode in (TEXT, BINARY):
            self._fragments = []
            self._compressed = bool(first & 0x40)
        self._fragments.append(payload)
        if not final:
            return
        data = b"".join(self._fragments)
        self._fragments = []
        if self._compressed:
            assert self._inflate is not None
            data = self._inflate.decompress(data + b"\x00\x00\xff\xff")
            if self._deflate_reset:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self.on_message(data.decode(), at)

    def _fail(self, error: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


def _frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame, masked as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


async def connect(
    url: str, subprotocol: str, on_message: OnMessage, *, compression: bool, within: float
) -> WireClient:
    """Opens a websocket to `url` (ws://host:port/path) asking for `subprotocol`."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"only ws:// URLs: {url}")
    port = parts.port or 80
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {parts.hostname}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *([f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}"] if compression else []),
        f"Sec-WebSocket-Protocol: {subprotocol}",
        f"User-Agent: {USER_AGENT}",
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        _, client = await loop.create_connection(
            lambda: WireClient(request, key, on_message), parts.hostname, port
        )
        await client.opened
    return client
