"""Writing a websocket message at once, without a coroutine: the express lane of live
subscriptions (gql/express.py) sends one event to a thousand sockets in one pass this way.

uvicorn's ASGI `send` is a coroutine that waits until the socket is writable, frames the message
(websockets' sans-I/O protocol) and writes it to the transport. When the socket is writable
that wait is nothing, and the rest is synchronous: `DirectWriter.send_text` does the same steps
in a plain call, and declines (False) whenever the coroutine would have waited or refused, so
that the caller sends the usual way instead.

`DirectWrites`, the outermost middleware, keeps each websocket's writer in its ASGI scope
(`writer_of(scope)`): only there is uvicorn's own `send` still in hand. Another server, or
another of uvicorn's websocket implementations, gives no writer, and every message goes the
usual way.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

SCOPE_KEY = "rendertrack.direct_writer"
# What DirectWriter reads of uvicorn's protocol (uvicorn 0.54's sans-I/O implementation).
_USED = (
    "disconnected",
    "close_sent",
    "handshake_complete",
    "initial_response",
    "writable",
    "transport",
    "conn",
)


class DirectWriter:
    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def send_text(self, text: bytes) -> bool:
        """Sends one text message (UTF-8) now; False when it cannot without waiting (the
        client reads slower than it is sent to) or the socket is closing."""
        protocol = self._protocol
        if (
            protocol.disconnected
            or protocol.close_sent
            or not protocol.handshake_complete
            or protocol.initial_response is not None
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        try:
            protocol.conn.send_text(text)
        except InvalidState:
            return False
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        return True


def writer_of(scope: Scope) -> DirectWriter | None:
    writer: Any = scope.get(SCOPE_KEY)
    return writer if isinstance(writer, DirectWriter) else None


class DirectWrites:
    """Keeps a DirectWriter in the scope of every websocket uvicorn serves with its sans-I/O
    implementation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            protocol = getattr(send, "__self__", None)
            if isinstance(protocol, WebSocketsSansIOProtocol) and all(
                hasattr(protocol, name) for name in _USED
            ):
                scope[SCOPE_KEY] = DirectWriter(protocol)
        await self.app(scope, receive, send)
