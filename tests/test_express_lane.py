"""The express lane of live subscriptions: a change sent straight to a waiting subscriber's
socket in the bus's pass over the event (service/live.py, gql/express.py, gql/direct_ws.py).
It must change nothing a subscriber can see: every change once, in order, the same bytes, the
end of the stream, the errors; and whatever it cannot send goes the usual way."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import pytest

from domain.errors import NotFound
from domain.events import JobEvent, JobEventKind
from domain.policy import Actor
from domain.status import JobStatus
from gql import direct_ws
from models import Job
from service import jobs, live, users
from service.bus import EventBus
from service.bus.subscription import Delivery, Subscription
from service.users import actor_of
from tests.conftest import Account
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer, Socket, open_socket
from tests.operations import mutate, submit

WAIT = 10.0
PROGRESS = "mutation($id: ID!, $p: Int!) { reportProgress(id: $id, progress: $p) { id } }"
COMPLETE = "mutation($id: ID!) { completeJob(id: $id) { id } }"
PLAIN = "subscription($id: ID!) { jobUpdated(id: $id) { kind sequence job { id progress } } }"
EVERY_JOB = "subscription { jobEvents { kind job { id status progress } } }"
# `actor` is read from the database: its result is never ready without waiting.
WITH_ACTOR = (
    "subscription($id: ID!) { jobUpdated(id: $id) { kind sequence actor { email } "
    "job { progress } } }"
)


async def rendering_job(owner: Actor, worker: Actor) -> Job:
    await jobs.submit_job(owner, valid_submission())
    claimed = await jobs.claim_next(worker)
    assert claimed is not None and claimed.status is JobStatus.RENDERING
    return claimed


class Lane:
    """An express callback that records what it was offered and answers as told."""

    def __init__(self, answer: Callable[[live.Update], bool] = lambda _: True) -> None:
        self.answer = answer
        self.sent: list[int] = []  # sequences
        self.positions: list[int] = []
        self.arrived = asyncio.Event()

    def __call__(self, update: live.Update) -> bool:
        assert update.event is not None and update.live
        taken = self.answer(update)
        if taken:
            self.sent.append(update.event.sequence)
            self.positions.append(update.event.position or 0)
            self.arrived.set()
        return taken

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.sent) < count:
                self.arrived.clear()
                await self.arrived.wait()


# --- the bus's side ---------------------------------------------------------------------------


def delivery(sequence: int, kind: JobEventKind = JobEventKind.LOG) -> Delivery:
    event = JobEvent(
        kind=kind,
        job_id="job",
        user_id="owner",
        status=JobStatus.RENDERING,
        previous_status=None,
        progress=0,
        sequence=sequence,
        updated_at=datetime.now(UTC),
        worker_id="worker",
    )
    return Delivery(event, Job(id="job"), sequence)


async def test_only_a_consumer_waiting_with_nothing_pending_is_offered_a_delivery() -> None:
    offered: list[int] = []
    subscription = Subscription(lambda _: True, 10, lambda _: None)
    subscription.express = lambda item: offered.append(item.event.sequence) or True

    subscription.push(delivery(1))  # nobody waits: buffered
    assert offered == [] and subscription.pending == 1

    waiting = asyncio.create_task(anext(subscription))
    first = await waiting  # the buffered one, the usual way
    assert isinstance(first, Delivery) and first.event.sequence == 1

    waiting = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)  # it waits now, with nothing pending
    subscription.push(delivery(2))
    subscription.push(delivery(3))
    assert offered == [2, 3] and subscription.pending == 0 and not waiting.done()

    subscription.express = lambda _: False  # declined: buffered, and the consumer wakes
    subscription.push(delivery(4))
    item = await asyncio.wait_for(waiting, WAIT)
    assert isinstance(item, Delivery) and item.event.sequence == 4
    subscription.close()
    assert subscription.express is None


async def test_an_express_that_fails_is_dropped_and_its_deliveries_buffered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_: Delivery) -> bool:
        raise RuntimeError("broken lane")

    subscription = Subscription(lambda _: True, 10, lambda _: None)
    subscription.express = broken
    waiting = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR):
        subscription.push(delivery(1))
    item = await asyncio.wait_for(waiting, WAIT)
    assert isinstance(item, Delivery) and item.event.sequence == 1
    assert subscription.express is None
    assert "express delivery failed" in caplog.text
    subscription.close()


# --- following a job --------------------------------------------------------------------------


async def test_a_follower_sends_each_next_change_express_and_yields_the_end(
    bus: EventBus, owner: Actor, worker: Actor, admin: Actor
) -> None:
    job = await rendering_job(owner, worker)
    lane = Lane()
    updates = live.follow_job(bus, owner, job.id, express=lane)
    snapshot = await anext(updates)
    assert snapshot.event is None
    ending = asyncio.create_task(anext(updates))
    for index in range(5):
        await jobs.append_log(job.id, [f"note {index}"], actor=admin)
        await lane.wait_for(index + 1)
    await jobs.complete(job.id, actor=worker)
    last = await asyncio.wait_for(ending, WAIT)
    assert last.event is not None and last.event.status is JobStatus.COMPLETED
    assert lane.sent == list(range(job.sequence + 1, job.sequence + 6))
    assert last.event.sequence == job.sequence + 6  # the end is yielded, never sent express
    assert [update async for update in updates] == []


async def test_what_the_lane_declines_is_yielded_in_order(
    bus: EventBus, owner: Actor, worker: Actor, admin: Actor
) -> None:
    job = await rendering_job(owner, worker)
    lane = Lane(lambda update: update.event is not None and update.event.sequence % 2 == 0)
    updates = live.follow_job(bus, owner, job.id, express=lane)
    await anext(updates)
    yielded: list[int] = []

    async def read() -> None:
        async for update in updates:
            assert update.event is not None
            yielded.append(update.event.sequence)

    reader = asyncio.create_task(read())
    for index in range(8):
        await jobs.append_log(job.id, [f"note {index}"], actor=admin)
        await asyncio.sleep(0.02)
    await jobs.complete(job.id, actor=worker)
    await asyncio.wait_for(reader, WAIT)
    final = (await Job.get(id=job.id)).sequence
    assert sorted(lane.sent + yielded) == list(range(job.sequence + 1, final + 1))
    assert all(sequence % 2 == 0 for sequence in lane.sent) and lane.sent
    assert yielded == sorted(yielded) and yielded[-1] == final


async def test_a_follower_who_loses_sight_of_the_job_gets_not_found_not_the_change(
    bus: EventBus, owner: Actor, worker: Actor
) -> None:
    job = await rendering_job(owner, worker)
    lane = Lane()
    updates = live.follow_job(bus, worker, job.id, express=lane)
    await anext(updates)
    waiting = asyncio.create_task(anext(updates))
    await jobs.requeue(job.id, actor=worker)  # back in the queue: still in the worker's sight
    await lane.wait_for(1)
    other = actor_of((await users.create_user("w2@example.com", "W2", "worker")).user)
    claimed = await jobs.claim_next(other)  # now another worker's: out of its sight
    assert claimed is not None and claimed.id == job.id
    with pytest.raises(NotFound):
        await asyncio.wait_for(waiting, WAIT)
    assert lane.sent == [job.sequence + 1]


async def test_a_follower_of_every_job_sends_each_next_change_express(
    bus: EventBus, owner: Actor, worker: Actor, admin: Actor
) -> None:
    first = await rendering_job(owner, worker)
    second = await jobs.submit_job(owner, valid_submission())
    lane = Lane(lambda update: update.event is not None and update.event.job_id == first.id)
    updates = live.follow_events(bus, admin, express=lane)
    waiting = asyncio.create_task(anext(updates))
    await asyncio.sleep(0.05)  # subscribed, and waiting
    for index in range(3):
        await jobs.append_log(first.id, [f"note {index}"], actor=admin)
        await lane.wait_for(index + 1)
    await jobs.set_priority(second.id, 9, actor=owner)  # declined by this lane: yielded
    yielded = await asyncio.wait_for(waiting, WAIT)
    assert yielded.event is not None and yielded.event.job_id == second.id
    assert lane.sent == [first.sequence + 1, first.sequence + 2, first.sequence + 3]
    assert lane.positions == sorted(lane.positions)
    assert yielded.event.position is not None and yielded.event.position > lane.positions[-1]
    await updates.aclose()


# --- over a real server -----------------------------------------------------------------------


@asynccontextmanager
async def sockets_of(live: LiveServer, count: int) -> AsyncIterator[list[Socket]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_socket(live)) for _ in range(count)]


async def subscribed(socket: Socket, token: str, query: str, job_id: str) -> int:
    assert (await socket.init(token))["type"] == "connection_ack"
    await socket.subscribe(query, {"id": job_id})
    snapshot = (await socket.next_payload())["data"]["jobUpdated"]
    assert snapshot["kind"] == "SNAPSHOT"
    return int(snapshot["sequence"])


async def raw_messages(socket: Socket, count: int) -> list[str]:
    texts = []
    async with asyncio.timeout(WAIT):
        while len(texts) < count:
            text = await socket.connection.recv()
            assert isinstance(text, str)
            if json.loads(text)["type"] != "ping":
                texts.append(text)
    return texts


async def claimed_job(http: GraphQLClient, accounts: dict[str, Account]) -> tuple[str, str, str]:
    """(the owner's token, the worker's token, the id of the job the worker now renders)"""
    user, worker = accounts["user"].token, accounts["worker"].token
    job_id = await submit(http, user)
    await mutate(http, worker, "mutation { claimJob { id } }")
    return user, worker, job_id


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every message the server sent through the express lane (the server runs in this
    process)."""
    sent: list[bytes] = []
    original = direct_ws.DirectWriter.send_text

    def counted(self: direct_ws.DirectWriter, text: bytes) -> bool:
        done = original(self, text)
        if done:
            sent.append(text)
        return done

    monkeypatch.setattr(direct_ws.DirectWriter, "send_text", counted)
    return sent


async def test_many_subscribers_of_a_job_get_every_change_once_in_order_and_the_end(
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    direct_writes: list[bytes],
) -> None:
    user, worker, job_id = await claimed_job(http, accounts)
    subscribers = 12
    async with sockets_of(live, subscribers) as sockets:
        snapshots = {await subscribed(socket, user, PLAIN, job_id) for socket in sockets}
        assert len(snapshots) == 1
        received: list[list[str]] = [[] for _ in sockets]
        for progress in range(5, 100, 10):
            await mutate(http, worker, PROGRESS, id=job_id, p=progress)
            for index, socket in enumerate(sockets):  # every one waits again before the next
                received[index] += await raw_messages(socket, 1)
        await mutate(http, worker, COMPLETE, id=job_id)
        for index, socket in enumerate(sockets):
            received[index] += await raw_messages(socket, 2)

    first = snapshots.pop()
    for texts in received:
        assert texts == received[0]  # byte for byte the same frames
        messages = [json.loads(text) for text in texts]
        assert [m["type"] for m in messages] == ["next"] * 11 + ["complete"]
        events = [m["payload"]["data"]["jobUpdated"] for m in messages[:-1]]
        assert [e["sequence"] for e in events] == list(range(first + 1, first + 12))
        assert [e["job"]["progress"] for e in events] == [*range(5, 100, 10), 100]
    # Each progress change reached every subscriber through the lane, as the usual way would
    # have sent it; the completion went the usual way.
    assert len(direct_writes) == subscribers * 10
    assert {text.decode() for text in direct_writes} == {
        text for texts in received for text in texts[:10]
    }


async def test_job_events_subscribers_get_every_change_through_the_lane(
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    direct_writes: list[bytes],
) -> None:
    admin, user, worker = (accounts[name].token for name in ("admin", "user", "worker"))
    job_id = await submit(http, user)
    async with sockets_of(live, 3) as sockets:
        for socket in sockets:
            assert (await socket.init(admin))["type"] == "connection_ack"
            await socket.subscribe(EVERY_JOB, {})
        await asyncio.sleep(0.2)  # subscribed, and waiting
        await mutate(http, worker, "mutation { claimJob { id } }")
        for progress in (30, 60):
            await mutate(http, worker, PROGRESS, id=job_id, p=progress)
        await mutate(http, worker, COMPLETE, id=job_id)
        seen = [
            [
                (e["kind"], e["job"]["status"], e["job"]["progress"])
                for e in [(await socket.next_payload())["data"]["jobEvents"] for _ in range(4)]
            ]
            for socket in sockets
        ]
    assert (
        seen
        == [
            [
                ("STATUS_CHANGED", "RENDERING", 0),
                ("PROGRESS", "RENDERING", 30),
                ("PROGRESS", "RENDERING", 60),
                ("STATUS_CHANGED", "COMPLETED", 100),
            ]
        ]
        * 3
    )
    assert len(direct_writes) == 12  # jobEvents never ends: the completion is express too


async def test_a_result_that_needs_the_database_arrives_the_usual_way(
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    direct_writes: list[bytes],
) -> None:
    user, worker, job_id = await claimed_job(http, accounts)
    async with sockets_of(live, 3) as sockets:
        for socket in sockets:
            await subscribed(socket, user, WITH_ACTOR, job_id)
        await mutate(http, worker, PROGRESS, id=job_id, p=40)
        for socket in sockets:
            event = (await socket.next_payload())["data"]["jobUpdated"]
            assert event["actor"] == {"email": accounts["worker"].email}
            assert event["job"]["progress"] == 40
    assert direct_writes == []


async def test_a_completed_subscription_receives_nothing_more(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker, job_id = await claimed_job(http, accounts)
    async with open_socket(live) as socket, open_socket(live) as witness:
        await subscribed(socket, user, PLAIN, job_id)
        await subscribed(witness, user, PLAIN, job_id)
        await mutate(http, worker, PROGRESS, id=job_id, p=10)
        assert (await socket.next_payload())["data"]["jobUpdated"]["job"]["progress"] == 10
        assert (await witness.next_payload())["data"]["jobUpdated"]["job"]["progress"] == 10
        await socket.send({"id": "1", "type": "complete"})
        await asyncio.sleep(0.1)
        await mutate(http, worker, PROGRESS, id=job_id, p=20)
        assert (await witness.next_payload())["data"]["jobUpdated"]["job"]["progress"] == 20
        await socket.send({"type": "ping"})
        reply = json.loads(await asyncio.wait_for(socket.connection.recv(), WAIT))
        assert reply == {"type": "pong"}  # nothing came before it
