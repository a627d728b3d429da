"""One event costs the same SQL whether 1 or 200 websockets follow the job.

The server runs in this process, so every statement it sends goes through the
"tortoise.db_client" logger: the test counts them while one change is made directly through the
service (no HTTP request of its own to count) and until every subscriber has that event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from app.factory import create_app
from app.settings import Settings
from service import jobs
from testkit.sql_log import SqlLog, sql_log
from tests.conftest import Account
from tests.factories import valid_submission
from tests.live_server import LiveServer, Socket, open_socket, serve

JOB_UPDATED = """
subscription($id: ID!) { jobUpdated(id: $id) { kind sequence job { id status progress } } }
"""
MANY = 200
BATCH = 50
WAIT = 20.0
# After every subscriber has the event: time for any statement still to come to show up.
SETTLE = 0.3


@pytest.fixture
def statements() -> Iterator[SqlLog]:
    # propagate=False: hundreds of DEBUG lines would only clutter the test report
    with sql_log(recording=False, propagate=False) as log:
        yield log


async def subscribed(
    stack: contextlib.AsyncExitStack, live: LiveServer, token: str, job_id: str
) -> Socket:
    socket = await stack.enter_async_context(open_socket(live))
    assert (await socket.init(token))["type"] == "connection_ack"
    await socket.subscribe(JOB_UPDATED, {"id": job_id})
    payload = await socket.next_payload()
    assert payload["data"]["jobUpdated"]["kind"] == "SNAPSHOT", payload
    return socket


async def change_seen_by(
    log: SqlLog, sockets: list[Socket], job_id: str, priority: int
) -> list[str]:
    """The statements issued from the change until every socket received its event."""
    with log.window() as seen:
        await jobs.set_priority(job_id, priority)

        async def receive(socket: Socket) -> None:
            payload = await socket.next_payload()
            event = payload["data"]["jobUpdated"]
            assert event["kind"] == "PRIORITY_CHANGED", payload
            assert event["job"]["id"] == job_id

        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(receive(socket) for socket in sockets))
        await asyncio.sleep(SETTLE)
    return [statement.one_line for statement in seen]


async def no_subscribers_left(live: LiveServer) -> None:
    bus = live.app.state.bus
    async with asyncio.timeout(WAIT):
        while bus.subscriber_count:
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def live(db: str) -> AsyncIterator[LiveServer]:
    """A live server where one user may hold all the subscribers of this test."""
    settings = Settings(database_url=db, max_connections_per_user=MANY + 10)
    async with serve(create_app(settings, manage_database=False)) as server:
        yield server


@pytest.mark.slow
async def test_one_event_costs_the_same_sql_for_one_and_for_two_hundred_subscribers(
    live: LiveServer, accounts: dict[str, Account], statements: SqlLog
) -> None:
    user = accounts["user"]
    job = await jobs.submit_job(user.actor, SUBMISSION)
    bus = live.app.state.bus

    # Nobody listens: the change alone (the bus reads nothing for an event nobody wants).
    alone = await change_seen_by(statements, [], job.id, 8)
    assert alone, "no statement was logged: is the tortoise.db_client logger still used?"

    async with contextlib.AsyncExitStack() as stack:
        one = [await subscribed(stack, live, user.token, job.id)]
        assert bus.subscriber_count == 1
        with_one = await change_seen_by(statements, one, job.id, 9)
    await no_subscribers_left(live)

    async with contextlib.AsyncExitStack() as stack:
        many: list[Socket] = []
        for start in range(0, MANY, BATCH):
            many += await asyncio.gather(
                *(subscribed(stack, live, user.token, job.id) for _ in range(start, start + BATCH))
            )
        assert bus.subscriber_count == MANY
        with_many = await change_seen_by(statements, many, job.id, 2)
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(socket.connection.close() for socket in many))
    await no_subscribers_left(live)
    assert bus.subscriber_count == 0

    # The bus reads the job once per event, for every subscriber of this process together.
    extra = Counter(with_one) - Counter(alone)
    assert sum(extra.values()) == 1 and len(with_one) == len(alone) + 1, (alone, with_one)
    (read,) = extra
    assert read.upper().startswith("SELECT") and '"jobs"' in read, read
    assert Counter(with_many) == Counter(with_one), (with_one, with_many)


SUBMISSION = valid_submission()
