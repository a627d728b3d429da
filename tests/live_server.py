"""A real uvicorn server for websocket tests, and protocol clients for both subprotocols."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.websocket_protocol import WEBSOCKET_OPTIONS

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
WAIT = 10.0


@dataclass
class LiveServer:
    app: Starlette
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


@asynccontextmanager
async def serve(app: Starlette, **options: Any) -> AsyncIterator[LiveServer]:
    """uvicorn in this event loop, on a free port, with the app's lifespan (its event bus), its
    websockets as `rendertrack serve` runs them (`options` override uvicorn's settings)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        **{**WEBSOCKET_OPTIONS, **options},
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer(app=app, port=port)
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT):
            await task


class Socket:
    """One websocket speaking graphql-transport-ws or the legacy graphql-ws protocol."""

    def __init__(self, connection: ClientConnection, protocol: str) -> None:
        self.connection = connection
        self.protocol = protocol

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next message that is not a keep-alive."""
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.connection.recv())
                if message.get("type") not in {"ka", "ping", "pong"}:
                    return message

    async def init(self, token: str | None) -> dict[str, Any]:
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def subscribe(self, query: str, variables: dict[str, Any], op_id: str = "1") -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send(
            {"id": op_id, "type": kind, "payload": {"query": query, "variables": variables}}
        )

    async def next_payload(self) -> dict[str, Any]:
        """The next result; fails on anything else (errors arrive inside results)."""
        message = await self.receive()
        assert message["type"] in {"next", "data"}, message
        return message["payload"]

    async def expect_complete(self) -> None:
        message = await self.receive()
        assert message["type"] == "complete", message


async def closed_within(socket: Socket, seconds: float) -> tuple[int | None, str]:
    """Reads until the server closes the socket; (close code, reason)."""
    async with asyncio.timeout(seconds):
        try:
            while True:
                await socket.connection.recv()
        except ConnectionClosed as closed:
            frame = closed.rcvd
            return (frame.code, frame.reason) if frame else (None, "")


@asynccontextmanager
async def open_socket(
    server: LiveServer, protocol: str = TRANSPORT_WS, headers: dict[str, str] | None = None
) -> AsyncIterator[Socket]:
    async with connect(
        server.ws_url,
        subprotocols=[protocol],
        additional_headers=headers or {},  # type: ignore[list-item]
    ) as connection:
        yield Socket(connection, protocol)
