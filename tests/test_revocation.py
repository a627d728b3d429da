"""Revocation reaches open connections, and each user has a share of them: against a real
uvicorn server, over both websocket protocols."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from app.factory import create_app
from app.settings import Settings
from gql.connections import RECHECK_INTERVAL_SECONDS
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import (
    LEGACY_WS,
    TRANSPORT_WS,
    LiveServer,
    Socket,
    closed_within,
    open_socket,
    serve,
)
from tests.operations import mutate, submit
from tests.test_cli import rendertrack

PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
JOB_EVENTS = "subscription { jobEvents { kind job { id status } } }"
DEACTIVATE = "mutation($id: ID!) { deactivateUser(userId: $id) { isActive } }"
ROTATE = "mutation($id: ID!) { rotateToken(userId: $id) { token } }"
WITHIN = 1.0  # seconds: what "at once" means for a revocation


async def subscribed(socket: Socket, token: str) -> None:
    ack = await socket.init(token)
    assert ack["type"] == "connection_ack", ack
    await socket.subscribe(JOB_EVENTS, {})


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("revocation", [DEACTIVATE, ROTATE])
async def test_a_revoked_users_open_websocket_is_closed_at_once(
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    protocol: str,
    revocation: str,
) -> None:
    user, admin = accounts["user"], accounts["admin"]
    async with open_socket(live, protocol) as socket, open_socket(live, protocol) as bystander:
        await subscribed(socket, user.token)
        await subscribed(bystander, accounts["other"].token)
        await mutate(http, admin.token, revocation, id=user.id)
        started = time.monotonic()
        code, reason = await closed_within(socket, WITHIN)
        assert time.monotonic() - started < WITHIN
        assert code == 4403 and "revoked" in reason
        # Another user's connection is untouched: it still receives events.
        job_id = await submit(http, accounts["other"].token)
        async with asyncio.timeout(5):
            while True:
                event = (await bystander.next_payload())["data"]["jobEvents"]
                if event["job"]["id"] == job_id and event["job"]["status"] == "QUEUED":
                    break  # the submission's last event: nothing more is on its way


async def test_a_revoked_token_cannot_open_a_new_websocket(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user = accounts["user"]
    await mutate(http, accounts["admin"].token, DEACTIVATE, id=user.id)
    async with open_socket(live) as socket:
        await socket.send(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {user.token}"}}
        )
        code, _ = await closed_within(socket, 5)
    assert code == 4403


async def test_each_user_has_a_share_of_connections(db: str, accounts: dict[str, Account]) -> None:
    app = create_app(Settings(database_url=db, max_connections_per_user=2), manage_database=False)
    async with serve(app) as server:
        async with open_socket(server) as first, open_socket(server) as second:
            assert (await first.init(accounts["user"].token))["type"] == "connection_ack"
            assert (await second.init(accounts["user"].token))["type"] == "connection_ack"
            async with open_socket(server) as third, open_socket(server) as other:
                await third.send(
                    {
                        "type": "connection_init",
                        "payload": {"Authorization": f"Bearer {accounts['user'].token}"},
                    }
                )
                code, _ = await closed_within(third, 5)
                assert code == 4403
                # Another user is not held back by this one's share.
                assert (await other.init(accounts["other"].token))["type"] == "connection_ack"
        # Closed connections give their place back.
        async with open_socket(server) as again:
            assert (await again.init(accounts["user"].token))["type"] == "connection_ack"


@pytest.mark.slow
async def test_a_revocation_from_the_command_line_closes_the_websocket_too(
    live: LiveServer, accounts: dict[str, Account], db: str, tmp_path: Path
) -> None:
    """`rendertrack users deactivate` is another process: on PostgreSQL its notice arrives at
    commit; on SQLite the server finds it at its next check of its connections' users."""
    user = accounts["user"]
    async with open_socket(live) as socket:
        await subscribed(socket, user.token)
        finished = await asyncio.to_thread(
            rendertrack, "users", "deactivate", "--email", user.email, database_url=db, cwd=tmp_path
        )
        assert finished.returncode == 0, finished.stderr
        within = WITHIN if db.startswith("postgres") else RECHECK_INTERVAL_SECONDS + 2
        code, _ = await closed_within(socket, within)
    assert code == 4403


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_connection_carries_a_limited_number_of_subscriptions(
    db: str, accounts: dict[str, Account], protocol: str
) -> None:
    settings = Settings(database_url=db, max_subscriptions_per_connection=2)
    async with (
        serve(create_app(settings, manage_database=False)) as server,
        open_socket(server, protocol) as socket,
    ):
        assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
        await socket.subscribe(JOB_EVENTS, {}, op_id="1")
        await socket.subscribe(JOB_EVENTS, {}, op_id="2")
        await socket.subscribe(JOB_EVENTS, {}, op_id="3")
        refusal = await socket.receive()
        assert refusal["type"] == "error" and refusal["id"] == "3", refusal
        payload = refusal["payload"]
        error = payload[0] if isinstance(payload, list) else payload
        assert error["extensions"] == {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": 2}
        assert "RENDERTRACK_MAX_SUBSCRIPTIONS_PER_CONNECTION" in error["message"]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "start", "payload": {"query": "subscription { jobEvents { kind } }"}},
        {"type": "start", "id": 7, "payload": {"query": "subscription { jobEvents { kind } }"}},
        {"type": "start", "id": "1", "payload": "not an object"},
        {"type": "stop"},
    ],
    ids=["start-without-id", "start-id-not-string", "payload-not-object", "stop-without-id"],
)
async def test_a_malformed_legacy_message_closes_the_socket_with_4400(
    live: LiveServer, accounts: dict[str, Account], message: dict
) -> None:
    async with open_socket(live, LEGACY_WS) as socket:
        assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
        await socket.send(message)
        code, reason = await closed_within(socket, 5)
    assert code == 4400 and reason
    async with open_socket(live, LEGACY_WS) as again:  # the server carries on
        assert (await again.init(accounts["user"].token))["type"] == "connection_ack"


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize("text", ["[1, 2]", "5", '"connection_init"', "null"])
async def test_json_that_is_not_an_object_closes_the_socket_with_4400(
    live: LiveServer,
    accounts: dict[str, Account],
    protocol: str,
    text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_socket(live, protocol) as socket:
        assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
        await socket.connection.send(text)
        code, reason = await closed_within(socket, 5)
    assert (code, reason) == (4400, "WebSocket message must be a JSON object")
    assert "Traceback" not in caplog.text
    async with open_socket(live, protocol) as again:  # the server carries on
        assert (await again.init(accounts["user"].token))["type"] == "connection_ack"
