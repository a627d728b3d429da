"""Live progress over real websockets against a real uvicorn server, both protocols."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from app.factory import create_app
from app.settings import Settings
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import LEGACY_WS, TRANSPORT_WS, LiveServer, open_socket, serve
from tests.operations import JOB_UPDATED, event_of, mutate, submit

JOB_EVENTS = """
subscription($filter: JobEventFilter) {
  jobEvents(filter: $filter) {
    kind sequence previousStatus job { id status progress user { email } }
  }
}
"""


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_render_seen_live_from_snapshot_to_completion(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account], protocol: str
) -> None:
    user, worker = accounts["user"].token, accounts["worker"].token
    job_id = await submit(http, user)
    async with open_socket(live, protocol) as socket:
        assert (await socket.init(user))["type"] == "connection_ack"
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        events = [event_of(await socket.next_payload())]
        sequences = []

        async def step(query: str, **variables: Any) -> None:
            await mutate(http, worker, query, **variables)
            payload = await socket.next_payload()
            events.append(event_of(payload))
            sequences.append(payload["data"]["jobUpdated"]["sequence"])

        await step("mutation { claimJob { id } }")
        for progress in (10, 50, 90):
            await step(
                "mutation($id: ID!, $p: Int!) { reportProgress(id: $id, progress: $p) { id } }",
                id=job_id,
                p=progress,
            )
        await step("mutation($id: ID!) { completeJob(id: $id) { id } }", id=job_id)
        await socket.expect_complete()

    assert events == [
        ("SNAPSHOT", "QUEUED", 0, None),
        ("STATUS_CHANGED", "RENDERING", 0, "QUEUED"),
        ("PROGRESS", "RENDERING", 10, None),
        ("PROGRESS", "RENDERING", 50, None),
        ("PROGRESS", "RENDERING", 90, None),
        ("STATUS_CHANGED", "COMPLETED", 100, "RENDERING"),
    ]
    assert sequences == sorted(set(sequences)) and len(sequences) == 5


async def test_a_terminal_job_yields_its_snapshot_and_completes(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(http, accounts["user"].token, templatePath="relative.aep")
    async with open_socket(live) as socket:
        await socket.init(accounts["user"].token)
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        assert event_of(await socket.next_payload())[:2] == ("SNAPSHOT", "FAILED")
        await socket.expect_complete()


async def test_another_users_job_is_not_found(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(http, accounts["other"].token)
    async with open_socket(live) as socket:
        await socket.init(accounts["user"].token)
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        payload = await socket.next_payload()
        assert payload["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        await socket.expect_complete()


async def registered(live: LiveServer, count: int) -> None:
    """Until the server's bus holds `count` subscriptions: a signal, not a guess."""
    async with asyncio.timeout(10):
        while live.app.state.bus.subscriber_count < count:
            await asyncio.sleep(0.01)


async def test_a_user_sees_only_its_own_jobs_in_job_events(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    async with open_socket(live) as socket:
        await socket.init(accounts["user"].token)
        await socket.subscribe(JOB_EVENTS, {"filter": None})
        await registered(live, 1)
        await submit(http, accounts["other"].token, projectName="Theirs")
        mine = await submit(http, accounts["user"].token, projectName="Mine")
        theirs_again = await submit(http, accounts["other"].token, projectName="Theirs again")
        marker = await submit(http, accounts["user"].token, projectName="Marker")
        # Events arrive in commit order: the marker's three follow mine with nothing between.
        seen = [await socket.next_payload() for _ in range(6)]
        assert [p["data"]["jobEvents"]["job"]["id"] for p in seen] == [mine] * 3 + [marker] * 3
        assert theirs_again not in {p["data"]["jobEvents"]["job"]["id"] for p in seen}
        assert [p["data"]["jobEvents"]["kind"] for p in seen[:3]] == [
            "CREATED", "STATUS_CHANGED", "STATUS_CHANGED",
        ]  # fmt: skip
        assert {p["data"]["jobEvents"]["job"]["user"]["email"] for p in seen} == {
            "user@example.com"
        }


async def test_job_events_filters_by_status_and_refuses_other_users_for_non_admins(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    async with open_socket(live) as socket:
        await socket.init(accounts["admin"].token)
        await socket.subscribe(JOB_EVENTS, {"filter": {"status": ["QUEUED"]}})
        await registered(live, 1)
        job_id = await submit(http, accounts["other"].token)
        payload = await socket.next_payload()
        assert event_of(payload, "jobEvents") == ("STATUS_CHANGED", "QUEUED", 0, "VALIDATING")
        assert payload["data"]["jobEvents"]["job"]["id"] == job_id
    async with open_socket(live) as socket:
        await socket.init(accounts["user"].token)
        await socket.subscribe(JOB_EVENTS, {"filter": {"userId": accounts["other"].id}})
        payload = await socket.next_payload()
        assert payload["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("token", [None, "rt_wrong"])
async def test_transport_ws_refuses_a_missing_or_wrong_token_with_4403(
    live: LiveServer, token: str | None
) -> None:
    async with open_socket(live, TRANSPORT_WS) as socket:
        await socket.send(
            {
                "type": "connection_init",
                "payload": {"Authorization": f"Bearer {token}"} if token else {},
            }
        )
        with pytest.raises(ConnectionClosed) as closed:
            await socket.receive()
        assert closed.value.rcvd.code == 4403


async def test_legacy_ws_refuses_a_wrong_token_with_connection_error(live: LiveServer) -> None:
    async with open_socket(live, LEGACY_WS) as socket:
        message = await socket.init("rt_wrong")
        assert message["type"] == "connection_error"
        with pytest.raises(ConnectionClosed):
            await socket.receive()


async def test_the_token_may_come_in_the_upgrade_request_headers(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(http, accounts["user"].token)
    headers = {"Authorization": f"Bearer {accounts['user'].token}"}
    async with open_socket(live, TRANSPORT_WS, headers=headers) as socket:
        assert (await socket.init(None))["type"] == "connection_ack"
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        assert event_of(await socket.next_payload())[0] == "SNAPSHOT"


@pytest.mark.slow
async def test_abrupt_disconnects_release_every_subscription(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(http, accounts["user"].token)
    bus = live.app.state.bus
    for _ in range(20):
        sockets = []
        for _ in range(10):
            context = open_socket(live)
            socket = await context.__aenter__()
            await socket.init(accounts["user"].token)
            await socket.subscribe(JOB_UPDATED, {"id": job_id})
            assert event_of(await socket.next_payload())[0] == "SNAPSHOT"
            sockets.append((context, socket))
        assert bus.subscriber_count >= 10
        for _context, socket in sockets:
            socket.connection.transport.abort()  # no close frame: the client just vanishes
    async with asyncio.timeout(10):
        while bus.subscriber_count:
            await asyncio.sleep(0.05)
    assert bus.subscriber_count == 0


async def test_a_change_made_while_the_listen_connection_is_lost_still_arrives(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account], backend: str, db: str
) -> None:
    if backend != "postgres":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    import asyncpg

    from service.bus.postgres import listen_dsn

    job_id = await submit(http, accounts["user"].token)
    bus = live.app.state.bus
    name = db.rsplit("/", 1)[1]
    # A database cannot refuse connections to itself: ask from the server's default database.
    admin = await asyncpg.connect(listen_dsn(db.rsplit("/", 1)[0] + "/postgres"))
    async with open_socket(live) as socket:
        await socket.init(accounts["user"].token)
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        assert event_of(await socket.next_payload())[0] == "SNAPSHOT"
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", bus.listen_backend_pid)
            # Nobody listens now, and the LISTEN connection cannot come back: the change
            # (through the pool's open connections) reaches the subscriber from the table.
            await mutate(
                http, accounts["user"].token,
                "mutation($id: ID!) { setJobPriority(id: $id, priority: 9) { id } }", id=job_id,
            )  # fmt: skip
            changed = (await socket.next_payload())["data"]["jobUpdated"]
            assert (changed["kind"], changed["sequence"]) == ("PRIORITY_CHANGED", 4)
            assert bus.listen_backend_pid is None
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()


async def test_allowed_origins_decide_which_browser_pages_may_open_a_websocket(
    db: str, accounts: dict[str, Account]
) -> None:
    from websockets.exceptions import InvalidStatus

    settings = Settings(database_url=db, allowed_origins=("https://studio.example.com",))
    async with serve(create_app(settings, manage_database=False)) as server:
        allowed = {"Origin": "https://studio.example.com"}
        async with open_socket(server, headers=allowed) as socket:
            assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
        with pytest.raises(InvalidStatus):
            async with open_socket(server, headers={"Origin": "https://evil.example.com"}):
                pass
        async with open_socket(server) as socket:  # no Origin: not a browser, allowed
            assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
