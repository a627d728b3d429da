"""One event costs the same SQL whether 1 or 200 websockets follow the job, with the per-job
fields selected (queuePosition, logs, the owner, the estimate): the bus hands one job object to
every subscriber of an event, and those fields are read once per object.

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
subscription($id: ID!) {
  jobUpdated(id: $id) {
    kind sequence actor { email }
    job {
      id status progress queuePosition estimatedStartAt logs(tail: 5) nexrenderConfig
      user { email } worker { email }
    }
  }
}
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


def without_polls(statements: list[str]) -> tuple[Counter[str], int]:
    """The statements but the timed ones, and how many reads of new events there were: besides
    the read a change causes, the dispatcher also looks every few seconds, and the server checks
    its websockets' users every few seconds."""
    reads = [s for s in statements if 'FROM "job_events" WHERE "id" >' in s]
    timed = [s for s in statements if '"token_hash"' in s]
    return Counter(s for s in statements if s not in reads and s not in timed), len(reads)


async def no_subscribers_left(live: LiveServer) -> None:
    bus = live.app.state.bus
    async with asyncio.timeout(WAIT):
        while bus.subscriber_count:
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def live(db: str) -> AsyncIterator[LiveServer]:
    """A live server where one user may hold all the subscribers of this test."""
    settings = Settings(database_url=db, max_connections_per_user=MANY + 10)
    # No sweeper: its rounds would add statements to the windows at random.
    async with serve(create_app(settings, manage_database=False, run_duties=False)) as server:
        yield server


@pytest.mark.slow
async def test_one_event_costs_the_same_sql_for_one_and_for_two_hundred_subscribers(
    live: LiveServer, accounts: dict[str, Account], statements: SqlLog
) -> None:
    user = accounts["user"]
    job = await jobs.submit_job(user.actor, SUBMISSION)
    bus = live.app.state.bus

    # Nobody listens: the change alone (the bus reads the events, and no job for them).
    alone = await change_seen_by(statements, [], job.id, 8)
    assert alone, "no statement was logged: is the tortoise.db_client logger still used?"

    async with contextlib.AsyncExitStack() as stack:
        one = [await subscribed(stack, live, user.token, job.id)]
        assert bus.subscriber_count == 1
        await change_seen_by(statements, one, job.id, 7)  # the bus learns the job's columns
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

    # What a subscriber adds are the reads of its selected fields, once per event: the same
    # statements for 200 subscribers as for one.
    (alone_sql, _), (one_sql, one_reads), (many_sql, many_reads) = map(
        without_polls, (alone, with_one, with_many)
    )
    extra = one_sql - alone_sql
    assert extra and all(statement.upper().startswith("SELECT") for statement in extra), extra
    assert not alone_sql - one_sql
    assert many_sql == one_sql, (with_one, with_many)
    assert 1 <= many_reads <= one_reads + 1


SUBMISSION = valid_submission()
