"""uvicorn's websocket protocol (its websockets sans-I/O implementation) with less kept per socket.

A server holds one protocol object per open websocket for the socket's whole life, and most of
those sockets are idle subscribers: whatever one keeps is kept thousands of times (issue 13,
memory per idle subscriber). uvicorn's own keeps, beside what a socket needs, an asyncio.Queue
for the messages received (four deques of ~0.5 KiB each, for what is at most a message or two:
uvicorn stops reading while one waits), an asyncio.Event (one more deque) for whether the socket
may be written to, the handshake's request and response with their headers, which nothing
reads once the response is sent, and its ~40 attributes in a dictionary. This subclass keeps
its attributes in slots, replaces the queue and the event with two small objects that do what
uvicorn asks of them, and empties the handshake once answered: ~9 KiB less per idle socket
(`python -m bench memory`: 56 -> 47 KiB per idle subscriber), with the same behaviour.

`rendertrack serve` runs uvicorn with it and WEBSOCKET_OPTIONS (app/cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class Inbox:
    """The part of asyncio.Queue that uvicorn's protocol uses (`put_nowait`, `get`, `empty`),
    unbounded and first in, first out, with waiting getters woken in turn as asyncio.Queue
    wakes them."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] = []

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_next()

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._items and not getter.cancelled():
                    # Woken for an item, then cancelled: the item is the next getter's.
                    self._wake_next()
                raise
        return self._items.pop(0)

    def _wake_next(self) -> None:
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return


class Flag:
    """The part of asyncio.Event that uvicorn's protocol uses (`is_set`, `set`, `clear`,
    `wait`)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[bool]] = []

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    # Every attribute uvicorn 0.54's protocol sets, as slots: in the instance's dictionary its
    # 37 attributes would take ~1.5 KiB (CPython shares the keys of instance dictionaries of up
    # to 30). One uvicorn sets that is not listed still works, from the dictionary.
    __slots__ = (
        "app",
        "app_state",
        "asgi_version",
        "client",
        "close_sent",
        "close_timeout",
        "close_timer",
        "config",
        "conn",
        "connections",
        "curr_msg_data_type",
        "default_headers",
        "disconnected",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "initial_response",
        "last_ping_rtt",
        "logger",
        "loop",
        "pending_ping_payload",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "ping_timer",
        "pong_timer",
        "queue",
        "read_paused",
        "request",
        "response",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
        "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after it sent the handshake's response: from here on
        # neither the request nor the response is read again (the app has the request's headers
        # in the ASGI scope, a copy). websockets' parser keeps the request as long as the socket
        # lives (a local variable of its generator), so its headers are emptied, not only let go.
        request = getattr(self, "request", None)
        if request is not None:
            request.headers.clear()
        self.request = None
        self.response = None
        super().start_keepalive()


# How rendertrack runs uvicorn's websockets. No permessage-deflate: each websocket would keep a
# zlib compressor and decompressor (~40 KiB) and compress every frame for itself, for frames of
# a few hundred bytes (issue 13: memory per idle subscriber, CPU per message).
WEBSOCKET_OPTIONS: dict[str, Any] = {
    "ws": LeanWebSocketProtocol,
    "ws_per_message_deflate": False,
}
