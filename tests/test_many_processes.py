"""`rendertrack serve` as real processes on one PostgreSQL database: an event committed through
any process reaches the subscribers of every process (LISTEN/NOTIFY), in order.

Each test starts its servers on a database of its own, created empty: the first process migrates
it and prints the bootstrap ADMIN's token on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed

from tests.databases import (
    SKIP_POSTGRES_REASON,
    fresh_postgres_database,
    only_in_pass,
    postgres_server_url,
    running_in_ci,
)
from tests.graphql_client import GraphQLClient
from tests.live_server import Socket, open_socket
from tests.operations import (
    CLAIM,
    COMPLETE,
    CREATE_USER,
    JOB_UPDATED,
    REPORT,
    event_of,
    mutate,
    submit,
)
from tests.server_process import ServerProcess, rendertrack_serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres_only,
    only_in_pass(
        "postgres", "several server processes share events through PostgreSQL LISTEN/NOTIFY"
    ),
]

WAIT = 10.0

JOB_EVENTS = """
subscription { jobEvents { kind sequence previousStatus job { id status progress } } }
"""
# What a render looks like to a subscriber, after the mutations of `render`.
RENDER_EVENTS = [
    ("STATUS_CHANGED", "RENDERING", 0, "QUEUED"),
    ("PROGRESS", "RENDERING", 25, None),
    ("PROGRESS", "RENDERING", 75, None),
    ("STATUS_CHANGED", "COMPLETED", 100, "RENDERING"),
]


@pytest_asyncio.fixture
async def empty_database() -> AsyncIterator[str]:
    server_url = postgres_server_url()
    if server_url is None:
        if running_in_ci():
            pytest.fail(f"CI=true needs PostgreSQL: {SKIP_POSTGRES_REASON}")
        pytest.skip(SKIP_POSTGRES_REASON)
    async with fresh_postgres_database(server_url) as url:
        yield url


@contextlib.asynccontextmanager
async def graphql(server: ServerProcess) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as client:
        yield GraphQLClient(client)


async def create_user(http: GraphQLClient, admin: str, email: str, role: str) -> str:
    data = await mutate(http, admin, CREATE_USER, email=email, role=role)
    return data["createUser"]["token"]


def render_steps(job_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (CLAIM, {}),
        (REPORT, {"id": job_id, "p": 25}),
        (REPORT, {"id": job_id, "p": 75}),
        (COMPLETE, {"id": job_id}),
    ]


async def subscribe_job(
    server: ServerProcess,
    stack: contextlib.AsyncExitStack,
    token: str,
    job_id: str,
    *,
    request_id: str | None = None,
) -> Socket:
    headers = {"X-Request-ID": request_id} if request_id else None
    socket = await stack.enter_async_context(open_socket(server.live, headers=headers))
    assert (await socket.init(token))["type"] == "connection_ack"
    await socket.subscribe(JOB_UPDATED, {"id": job_id})
    assert event_of(await socket.next_payload()) == ("SNAPSHOT", "QUEUED", 0, None)
    return socket


async def next_event_of_job(socket: Socket, job_id: str, field: str) -> dict[str, Any]:
    """The next event about `job_id` (events of other jobs are skipped)."""
    async with asyncio.timeout(WAIT):
        while True:
            payload = await socket.next_payload()
            assert not payload.get("errors"), payload
            if payload["data"][field]["job"]["id"] == job_id:
                return payload


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    admin: str
    user: str
    worker: str


@pytest_asyncio.fixture
async def pair(empty_database: str, tmp_path: Path) -> AsyncIterator[Pair]:
    """Two `rendertrack serve` processes on one database; A started it (and its ADMIN)."""
    async with rendertrack_serve(empty_database, tmp_path) as a:
        admin = await a.read_token()
        await a.until_healthy()
        async with rendertrack_serve(empty_database, tmp_path) as b:
            await b.until_healthy()
            async with graphql(a) as http:
                user = await create_user(http, admin, "user@example.com", "USER")
                worker = await create_user(http, admin, "worker@example.com", "WORKER")
            yield Pair(a, b, admin, user, worker)
            await b.stop()
            # B found A's ADMIN: it created no user and printed no token.
            assert b.stdout_rest == b"", b.stdout_rest
        await a.stop()
        assert a.stdout_rest == b"", a.stdout_rest  # the token line only


async def test_a_subscriber_on_one_process_sees_every_change_made_through_another(
    pair: Pair,
) -> None:
    async with graphql(pair.b) as http_b, contextlib.AsyncExitStack() as stack:
        job_id = await submit(http_b, pair.user)
        on_a = await subscribe_job(pair.a, stack, pair.user, job_id)
        seen, sequences = [], []
        for query, variables in render_steps(job_id):
            await mutate(http_b, pair.worker, query, **variables)
            payload = await on_a.next_payload()  # each before the next: progress never coalesces
            seen.append(event_of(payload))
            sequences.append(payload["data"]["jobUpdated"]["sequence"])
        await on_a.expect_complete()
    assert seen == RENDER_EVENTS
    assert sequences == sorted(set(sequences)), sequences


async def test_job_events_on_one_process_see_changes_made_through_another(pair: Pair) -> None:
    async with graphql(pair.a) as http_a, open_socket(pair.b.live) as on_b:
        assert (await on_b.init(pair.admin))["type"] == "connection_ack"
        await on_b.subscribe(JOB_EVENTS, {})
        # No message says a subscription is on the bus: submit probes until one is seen (at the
        # lowest priority, so that the worker claims the job under test, not a probe).
        async with asyncio.timeout(WAIT):
            while True:
                await submit(http_a, pair.user, projectName="Probe", priority=1)
                with contextlib.suppress(TimeoutError):
                    await on_b.receive(timeout=0.5)
                    break

        job_id = await submit(http_a, pair.user)
        seen = [
            event_of(await next_event_of_job(on_b, job_id, "jobEvents"), "jobEvents")
            for _ in range(3)
        ]
        for query, variables in render_steps(job_id):
            await mutate(http_a, pair.worker, query, **variables)
            seen.append(event_of(await next_event_of_job(on_b, job_id, "jobEvents"), "jobEvents"))
    assert seen == [
        ("CREATED", "PENDING", 0, None),
        ("STATUS_CHANGED", "VALIDATING", 0, "PENDING"),
        ("STATUS_CHANGED", "QUEUED", 0, "VALIDATING"),
        *RENDER_EVENTS,
    ]


async def test_every_worker_process_of_one_server_delivers_every_event(
    empty_database: str, tmp_path: Path
) -> None:
    json_logs = {"RENDERTRACK_LOG_FORMAT": "json"}
    async with rendertrack_serve(
        empty_database, tmp_path, "--workers", "2", env=json_logs
    ) as server:
        admin = await server.read_token()
        await server.until_healthy()
        async with graphql(server) as http, contextlib.AsyncExitStack() as stack:
            user = await create_user(http, admin, "user@example.com", "USER")
            worker = await create_user(http, admin, "worker@example.com", "WORKER")
            job_id = await submit(http, user)
            # Separate connections: the kernel hands each to either worker process, and on a
            # busy machine it may hand every one to the same. So the first process to take one
            # is stopped while the next connects: only the other can accept it.
            first = await subscribe_job(server, stack, user, job_id, request_id="subscriber-0")
            taker = await process_of(server, "subscriber-0")
            os.kill(taker, signal.SIGSTOP)
            try:
                other = await subscribe_job(server, stack, user, job_id, request_id="subscriber-1")
            finally:
                os.kill(taker, signal.SIGCONT)
            assert await process_of(server, "subscriber-1") != taker
            sockets = [first, other]
            seen: list[list[tuple]] = [[] for _ in sockets]
            for query, variables in render_steps(job_id):
                await mutate(http, worker, query, **variables)
                for socket, events in zip(sockets, seen, strict=True):
                    events.append(event_of(await socket.next_payload()))
            for socket in sockets:
                await socket.expect_complete()
        await server.stop()
        assert server.stopped_by_sigint and server.process.returncode == 0, server.log_tail()
        log = server.log_text()
    assert seen == [RENDER_EVENTS] * len(sockets)
    assert log.count("Started server process") == 2, log
    assert server.stdout_rest == b"", server.stdout_rest  # the one token line only
    assert "Traceback" not in log


async def process_of(server: ServerProcess, request_id: str) -> int:
    """The pid of the server process whose log says it opened the websocket `request_id`."""
    async with asyncio.timeout(WAIT):
        while True:
            for line in server.log_text().splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("request_id") == request_id and record["message"].startswith(
                        "websocket open "
                    ):
                        return int(record["pid"])
            await asyncio.sleep(0.05)


async def test_a_revocation_through_one_process_closes_the_users_websocket_on_another(
    pair: Pair,
) -> None:
    async with graphql(pair.a) as http_a, open_socket(pair.b.live) as on_b:
        user_id = (await mutate(http_a, pair.user, "{ me { id } }"))["me"]["id"]
        assert (await on_b.init(pair.user))["type"] == "connection_ack"
        await on_b.subscribe("subscription { jobEvents { kind } }", {})
        await mutate(
            http_a,
            pair.admin,
            "mutation($id: ID!) { deactivateUser(userId: $id) { isActive } }",
            id=user_id,
        )
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(1.0):
            try:
                while True:
                    await on_b.connection.recv()
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4403
        assert asyncio.get_running_loop().time() - started < 1.0
