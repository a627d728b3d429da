"""The websocket protocol `rendertrack serve` runs (app/websocket_protocol.py): an idle socket
costs the server less than with uvicorn's own, and it behaves the same."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.factory import create_app
from app.settings import Settings
from app.websocket_protocol import Flag, Inbox, LeanWebSocketProtocol
from gql.direct_ws import DirectWriter, DirectWrites, writer_of
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import TRANSPORT_WS, LiveServer, Socket, serve
from tests.operations import JOB_UPDATED, REPORT, event_of, mutate, submit

IDLE_SOCKETS = 40
WAIT = 10.0


class IdleSockets:
    """An ASGI app that accepts every websocket and waits for it to go; it keeps the protocol
    objects uvicorn serves them with."""

    def __init__(self) -> None:
        self.protocols: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.protocols.append(send.__self__)
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "subprotocol": TRANSPORT_WS})
        while (await receive())["type"] != "websocket.disconnect":
            pass


async def idle_socket_bytes(protocol: type[WebSocketsSansIOProtocol]) -> float:
    """What one more idle websocket costs this process (server and client side), in bytes."""
    async with serve(IdleSockets(), ws=protocol) as server, AsyncExitStack() as sockets:
        # The first socket pays for what every later one shares.
        await sockets.enter_async_context(connect(server.ws_url, subprotocols=[TRANSPORT_WS]))
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(IDLE_SOCKETS):
                await sockets.enter_async_context(
                    connect(server.ws_url, subprotocols=[TRANSPORT_WS])
                )
            await asyncio.sleep(0.1)
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - before) / IDLE_SOCKETS
        finally:
            tracemalloc.stop()


async def test_an_idle_websocket_costs_the_server_less_than_with_uvicorns_own_protocol() -> None:
    uvicorns = await idle_socket_bytes(WebSocketsSansIOProtocol)
    lean = await idle_socket_bytes(LeanWebSocketProtocol)
    assert uvicorns - lean >= 6 * 1024, (uvicorns, lean)  # ~11 KiB measured


async def test_every_attribute_uvicorn_sets_has_a_slot() -> None:
    app = IdleSockets()
    async with serve(app) as server:
        async with connect(server.ws_url, subprotocols=[TRANSPORT_WS]) as socket:
            await socket.ping()
            await socket.send("hello")
        async with asyncio.timeout(WAIT):
            while not app.protocols[0].disconnected:
                await asyncio.sleep(0.01)
    (protocol,) = app.protocols
    assert protocol.__dict__ == {}
    assert protocol.request is None and protocol.response is None


async def test_the_express_lane_writes_straight_to_a_lean_socket() -> None:
    app = IdleSockets()
    writers: list[DirectWriter | None] = []

    async def direct_writes(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            writers.append(writer_of(scope))
        await app(scope, receive, send)

    async with (
        serve(DirectWrites(direct_writes)) as server,
        connect(server.ws_url, subprotocols=[TRANSPORT_WS]) as socket,
    ):
        async with asyncio.timeout(WAIT):
            while not app.protocols or not app.protocols[0].handshake_complete:
                await asyncio.sleep(0.01)
        (writer,) = writers
        assert writer is not None and writer.send_text(b'{"type":"ping"}')
        async with asyncio.timeout(WAIT):
            assert await socket.recv() == '{"type":"ping"}'


@asynccontextmanager
async def lean_server(db: str) -> AsyncIterator[tuple[LiveServer, GraphQLClient]]:
    """The real app on the test database, its websockets served by the lean protocol."""
    app = create_app(Settings(database_url=db), manage_database=False)
    async with (
        serve(app) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as http,
    ):
        yield server, GraphQLClient(http)


@asynccontextmanager
async def open_socket(
    server: LiveServer, headers: dict[str, str] | None = None
) -> AsyncIterator[Socket]:
    async with connect(
        server.ws_url, subprotocols=[TRANSPORT_WS], additional_headers=headers or {}
    ) as connection:
        yield Socket(connection, TRANSPORT_WS)


async def test_a_subscription_over_the_lean_protocol_sees_its_job_change(
    db: str, accounts: dict[str, Account]
) -> None:
    user, worker = accounts["user"].token, accounts["worker"].token
    async with lean_server(db) as (server, http):
        job_id = await submit(http, user)
        # The token in the upgrade request's headers: the app still reads them.
        async with open_socket(server, {"Authorization": f"Bearer {user}"}) as socket:
            assert (await socket.init(None))["type"] == "connection_ack"
            await socket.subscribe(JOB_UPDATED, {"id": job_id})
            assert event_of(await socket.next_payload())[0] == "SNAPSHOT"
            await mutate(http, worker, "mutation { claimJob { id } }")
            assert event_of(await socket.next_payload())[:2] == ("STATUS_CHANGED", "RENDERING")
            await mutate(http, worker, REPORT, id=job_id, p=40)
            assert event_of(await socket.next_payload())[:3] == ("PROGRESS", "RENDERING", 40)


async def test_a_refused_connection_init_still_closes_with_4403(db: str) -> None:
    async with lean_server(db) as (server, _), open_socket(server) as socket:
        await socket.send({"type": "connection_init", "payload": {"Authorization": "Bearer x"}})
        with pytest.raises(ConnectionClosed) as closed:
            await socket.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_abruptly_dropped_sockets_release_their_subscriptions(
    db: str, accounts: dict[str, Account]
) -> None:
    user = accounts["user"].token
    async with lean_server(db) as (server, http):
        job_id = await submit(http, user)
        bus = server.app.state.bus
        async with AsyncExitStack() as stack:
            for _ in range(5):
                socket = await stack.enter_async_context(open_socket(server))
                await socket.init(user)
                await socket.subscribe(JOB_UPDATED, {"id": job_id})
                assert event_of(await socket.next_payload())[0] == "SNAPSHOT"
                socket.connection.transport.abort()  # no close frame: the client vanishes
            async with asyncio.timeout(WAIT):
                while bus.subscriber_count:
                    await asyncio.sleep(0.05)


async def test_the_inbox_hands_items_out_in_order_to_getters_in_turn() -> None:
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    second = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert inbox.empty() and not first.done()
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    inbox.put_nowait("c")
    assert (await first, await second) == ("a", "b")
    assert not inbox.empty() and await inbox.get() == "c" and inbox.empty()


async def test_an_item_woken_for_a_cancelled_getter_goes_to_the_next() -> None:
    inbox = Inbox()
    cancelled = asyncio.ensure_future(inbox.get())
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("only")  # wakes `cancelled`, which is cancelled before it runs
    cancelled.cancel()
    async with asyncio.timeout(1):
        assert await waiting == "only"
    assert cancelled.cancelled()


async def test_the_flag_lets_waiters_through_only_while_set() -> None:
    flag = Flag()
    waiter = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    assert not flag.is_set() and not waiter.done()
    flag.set()
    assert await waiter is True
    flag.clear()
    again = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    assert not again.done()
    flag.set()
    assert await again is True and await flag.wait() is True
