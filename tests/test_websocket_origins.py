"""Which pages may open a websocket, against a real uvicorn server (issue 9): the server's own
origin (GraphiQL at /graphql), the origins of RENDERTRACK_ALLOWED_ORIGINS, and clients that are
not browsers (no Origin header); any other page is refused with one log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.factory import create_app
from app.settings import Settings
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import LEGACY_WS, TRANSPORT_WS, LiveServer, Socket, serve
from tests.operations import JOB_UPDATED, event_of, submit

STUDIO = "https://studio.example.com"
VIEW_LOGGER = "gql.view"


@asynccontextmanager
async def socket_at(
    url: str, origin: str | None, protocol: str = TRANSPORT_WS
) -> AsyncIterator[Socket]:
    headers = {"Origin": origin} if origin is not None else {}
    async with connect(url, subprotocols=[protocol], additional_headers=headers) as connection:  # type: ignore[list-item]
        yield Socket(connection, protocol)


def ws_url(server: LiveServer, host: str) -> str:
    return f"ws://{host}:{server.port}/graphql"


async def assert_subscribes(socket: Socket, token: str, job_id: str) -> None:
    assert (await socket.init(token))["type"] == "connection_ack"
    await socket.subscribe(JOB_UPDATED, {"id": job_id})
    kind, status, _, _ = event_of(await socket.next_payload())
    assert (kind, status) == ("SNAPSHOT", "QUEUED")


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_graphiql_on_the_servers_own_origin_may_subscribe(
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    caplog: pytest.LogCaptureFixture,
    host: str,
    protocol: str,
) -> None:
    """The page at http://<host>:<port>/graphql opens ws://<host>:<port>/graphql, with no
    RENDERTRACK_ALLOWED_ORIGINS set."""
    token = accounts["user"].token
    job_id = await submit(http, token)
    origin = f"http://{host}:{live.port}"
    with caplog.at_level(logging.WARNING):
        async with socket_at(ws_url(live, host), origin, protocol) as socket:
            await assert_subscribes(socket, token, job_id)
    assert not refusals(caplog)


async def test_a_page_on_another_origin_is_refused_with_one_line_naming_the_setting(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    others = [
        "https://evil.example.com",
        f"http://127.0.0.1:{live.port + 1}",  # another server on the same machine
        f"http://localhost:{live.port}",  # a page on localhost, sent to 127.0.0.1
    ]
    for origin in others:
        caplog.clear()
        with caplog.at_level(logging.WARNING), pytest.raises(InvalidStatus) as refused:
            async with socket_at(ws_url(live, "127.0.0.1"), origin):
                pass
        assert refused.value.response.status_code == 403
        [line] = refusals(caplog)
        assert line.name == VIEW_LOGGER
        message = line.getMessage()
        assert repr(origin) in message and "RENDERTRACK_ALLOWED_ORIGINS" in message
        assert "\n" not in message


async def test_a_listed_origin_may_subscribe(
    db: str, accounts: dict[str, Account], caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=db, allowed_origins=(STUDIO,))
    token = accounts["user"].token
    async with serve(create_app(settings, manage_database=False)) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
            job_id = await submit(GraphQLClient(client), token)
        with caplog.at_level(logging.WARNING):
            async with socket_at(ws_url(server, "127.0.0.1"), STUDIO) as socket:
                await assert_subscribes(socket, token, job_id)
            # Listing one origin does not stop the server's own page.
            async with socket_at(ws_url(server, "localhost"), f"http://localhost:{server.port}"):
                pass
        assert not refusals(caplog)
        with caplog.at_level(logging.WARNING), pytest.raises(InvalidStatus):
            async with socket_at(ws_url(server, "127.0.0.1"), "https://studio.example.org"):
                pass
        assert len(refusals(caplog)) == 1


async def test_a_client_that_sends_no_origin_is_not_a_browser_and_may_subscribe(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    token = accounts["worker"].token
    job_id = await submit(http, accounts["user"].token)
    async with socket_at(ws_url(live, "127.0.0.1"), None) as socket:
        await assert_subscribes(socket, token, job_id)


async def test_the_servers_own_page_still_needs_a_token(live: LiveServer) -> None:
    async with socket_at(ws_url(live, "127.0.0.1"), f"http://127.0.0.1:{live.port}") as socket:
        await socket.send({"type": "connection_init", "payload": {}})
        with pytest.raises(ConnectionClosed) as closed:
            await socket.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
