"""Resuming live views: jobUpdated(afterSequence) and jobEvents(after) replay what a client
missed and then go live, with no gap and no duplicate, even while changes commit during the
switch; a subscriber that falls behind is caught up from the table. Over real websockets to a
real uvicorn server where the wire matters, on the backend of the session."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from domain.policy import Actor
from domain.status import JobStatus
from domain.validation import JobSubmission
from models import Job, JobEventRecord
from service import event_store, jobs, live
from service.bus import EventBus
from tests.buses import FlakySource, started_bus
from tests.conftest import Account
from tests.factories import valid_submission
from tests.live_server import LiveServer, open_socket

WAIT = 20  # seconds for a whole stream

JOB_UPDATED = """
subscription($id: ID!, $after: Int) {
  jobUpdated(id: $id, afterSequence: $after) { kind sequence cursor job { status } }
}
"""
JOB_EVENTS = """
subscription($after: String) {
  jobEvents(after: $after) { kind sequence cursor job { id status } }
}
"""


def submission(name: str = "promo") -> JobSubmission:
    return valid_submission(project_name=f"Project {name}")


async def rendering_job(owner: Actor, worker: Actor) -> Job:
    job = await jobs.submit_job(owner, submission())
    claimed = await jobs.claim_next(worker)
    assert claimed is not None and claimed.id == job.id
    return claimed


async def log_then_complete(job_id: str, changes: int, admin: Actor, worker: Actor) -> None:
    """`changes` log lines by an admin (changes that never coalesce), letting others run every
    ten, then the job's completion."""
    for index in range(changes):
        await jobs.append_log(job_id, [f"note {index}"], actor=admin)
        if index % 10 == 0:
            await asyncio.sleep(0)
    await jobs.complete(job_id, actor=worker)


async def sequences_of_job_updated(
    live_server: LiveServer, token: str, job_id: str, after: int | None
) -> list[int]:
    """Every sequence one jobUpdated stream delivers, until it completes."""
    async with open_socket(live_server) as socket:
        assert (await socket.init(token))["type"] == "connection_ack"
        await socket.subscribe(JOB_UPDATED, {"id": job_id, "after": after})
        seen: list[int] = []
        async with asyncio.timeout(WAIT):
            while True:
                message = await socket.receive(WAIT)
                if message["type"] == "complete":
                    return seen
                assert message["type"] == "next", message
                assert not message["payload"].get("errors"), message
                seen.append(message["payload"]["data"]["jobUpdated"]["sequence"])


async def test_clients_resuming_while_changes_commit_get_every_change_once_in_order(
    live: LiveServer, accounts: dict[str, Account]
) -> None:
    user, worker, admin = accounts["user"], accounts["worker"], accounts["admin"]
    job = await rendering_job(user.actor, worker.actor)
    changes = 120
    rng = random.Random(7)

    async def client(delay: float) -> tuple[int, list[int]]:
        await asyncio.sleep(delay)
        current = (await Job.get(id=job.id)).sequence
        after = rng.randint(0, current)
        return after, await sequences_of_job_updated(live, user.token, job.id, after)

    writer = asyncio.create_task(log_then_complete(job.id, changes, admin.actor, worker.actor))
    results = await asyncio.gather(*(client(0.02 * n) for n in range(10)))
    await writer
    final = (await Job.get(id=job.id)).sequence
    assert final == 4 + changes + 1
    for after, seen in results:
        assert seen == list(range(after + 1, final + 1)), (after, seen)


async def test_job_events_resume_from_a_cursor_while_changes_commit(
    live: LiveServer, accounts: dict[str, Account]
) -> None:
    user, worker, admin = accounts["user"], accounts["worker"], accounts["admin"]
    job = await rendering_job(user.actor, worker.actor)
    changes = 80

    async def client(delay: float) -> tuple[int, list[int]]:
        await asyncio.sleep(delay)
        recorded = await event_store.job_events(job.id, 0, 1000)
        start = recorded[len(recorded) // 2]  # somewhere in what has committed so far
        async with open_socket(live) as socket:
            assert (await socket.init(user.token))["type"] == "connection_ack"
            await socket.subscribe(JOB_EVENTS, {"after": start.cursor})
            seen: list[int] = []
            async with asyncio.timeout(WAIT):
                while True:
                    payload = await socket.next_payload()
                    assert not payload.get("errors"), payload
                    event = payload["data"]["jobEvents"]
                    assert event["job"]["id"] == job.id
                    seen.append(event["sequence"])
                    if event["job"]["status"] == "COMPLETED":
                        return start.sequence, seen

    writer = asyncio.create_task(log_then_complete(job.id, changes, admin.actor, worker.actor))
    results = await asyncio.gather(*(client(0.03 * n) for n in range(6)))
    await writer
    final = (await Job.get(id=job.id)).sequence
    for after, seen in results:
        assert seen == list(range(after + 1, final + 1)), (after, seen)


async def test_a_resumed_stream_of_a_finished_job_replays_and_completes(
    live: LiveServer, accounts: dict[str, Account]
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    job = await rendering_job(user.actor, worker.actor)
    await jobs.report_progress(job.id, 50, actor=worker.actor)
    await jobs.complete(job.id, actor=worker.actor)
    assert await sequences_of_job_updated(live, user.token, job.id, 3) == [4, 5, 6]
    assert await sequences_of_job_updated(live, user.token, job.id, 6) == []
    assert await sequences_of_job_updated(live, user.token, job.id, None) == [6]  # a snapshot


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"id": "J", "after": -1}, "afterSequence"),
        ({"id": "J", "after": 999}, "afterSequence"),
    ],
)
async def test_an_impossible_after_sequence_is_refused_naming_it(
    live: LiveServer, accounts: dict[str, Account], variables: dict, field: str
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    job = await rendering_job(user.actor, worker.actor)
    async with open_socket(live) as socket:
        assert (await socket.init(user.token))["type"] == "connection_ack"
        await socket.subscribe(JOB_UPDATED, {**variables, "id": job.id})
        message = await socket.receive()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors
    assert errors[0]["extensions"]["fields"][0]["field"] == field


async def test_a_malformed_cursor_is_refused_naming_after(
    live: LiveServer, accounts: dict[str, Account]
) -> None:
    async with open_socket(live) as socket:
        assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
        await socket.subscribe(JOB_EVENTS, {"after": "bm90IGEgY3Vyc29y"})
        message = await socket.receive()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors
    assert errors[0]["extensions"]["fields"][0]["field"] == "after"


# --- falling behind, at the level of the service ----------------------------------------------


@pytest_asyncio.fixture
async def failing_bus(db: str) -> AsyncIterator[tuple[EventBus, FlakySource]]:
    source = FlakySource()
    async with started_bus(db, source) as bus:
        yield bus, source


async def collect(updates: AsyncIterator[live.Update], count: int | None = None) -> list[int]:
    seen: list[int] = []
    async with asyncio.timeout(WAIT):
        async for update in updates:
            assert update.event is not None, "no snapshot expected"
            assert update.job.sequence == update.event.sequence
            seen.append(update.event.sequence)
            if count is not None and len(seen) == count:
                break
    return seen


async def test_a_subscriber_that_falls_far_behind_is_caught_up_from_the_table(
    failing_bus: tuple[EventBus, FlakySource],
    owner: Actor,
    worker: Actor,
    admin: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus, _ = failing_bus
    monkeypatch.setattr(live, "SUBSCRIBER_BUFFER", 2)
    job = await rendering_job(owner, worker)
    followed = live.follow_job(bus, owner, job.id, after_sequence=job.sequence)
    everything = live.follow_events(
        bus, admin, after=(await event_store.job_events(job.id, 0))[-1].cursor
    )
    # Both are subscribed once they are first resumed: start them, then stop reading.
    first_job = asyncio.create_task(anext(followed))
    first_all = asyncio.create_task(anext(everything))
    await asyncio.sleep(0.05)
    for index in range(40):
        await jobs.append_log(job.id, [f"note {index}"], actor=admin)
    await jobs.complete(job.id, actor=worker)
    final = (await Job.get(id=job.id)).sequence
    assert (await first_job).event.sequence == job.sequence + 1  # type: ignore[union-attr]
    assert (await first_all).event.sequence == job.sequence + 1  # type: ignore[union-attr]
    await asyncio.sleep(0.2)  # the buffers overflowed long ago
    assert await collect(followed) == list(range(job.sequence + 2, final + 1))
    rest = await collect(everything, count=final - job.sequence - 1)
    assert rest == list(range(job.sequence + 2, final + 1))
    await everything.aclose()


async def test_the_change_that_ends_a_job_arrives_even_when_reads_fail_at_that_moment(
    failing_bus: tuple[EventBus, FlakySource], owner: Actor, worker: Actor
) -> None:
    bus, source = failing_bus
    job = await rendering_job(owner, worker)
    followed = live.follow_job(bus, owner, job.id)
    snapshot = await anext(followed)
    assert snapshot.event is None and snapshot.job.status is JobStatus.RENDERING
    source.failures_to_come = 4
    await jobs.complete(job.id, actor=worker)
    updates = [update async for update in followed]  # ends by itself after COMPLETED
    assert [(u.event.status if u.event else None) for u in updates] == [JobStatus.COMPLETED]
    assert source.failures_to_come == 0


async def test_a_stream_never_delivers_the_same_change_twice_nor_skips_one(
    failing_bus: tuple[EventBus, FlakySource], owner: Actor, worker: Actor, admin: Actor
) -> None:
    """Consumers of every speed, subscribed at every moment of a burst of changes."""
    bus, _ = failing_bus
    job = await rendering_job(owner, worker)

    async def follower(delay: float, pause: float) -> list[int]:
        await asyncio.sleep(delay)
        seen: list[int] = []
        snapshot_at = None
        async with asyncio.timeout(WAIT):
            async for update in live.follow_job(bus, owner, job.id):
                if update.event is None:
                    snapshot_at = update.job.sequence
                else:
                    seen.append(update.event.sequence)
                await asyncio.sleep(pause)
        assert snapshot_at is not None
        return [snapshot_at, *seen]

    async def burst() -> None:
        for index in range(60):
            await jobs.append_log(job.id, [f"note {index}"], actor=admin)
        await jobs.complete(job.id, actor=worker)

    results: Sequence[list[int]] = await asyncio.gather(
        burst(), *(follower(0.005 * n, 0.002 * (n % 3)) for n in range(8))
    )
    final = (await Job.get(id=job.id)).sequence
    for seen in results[1:]:
        assert seen == list(range(seen[0], final + 1)), seen


async def test_a_resume_into_history_that_is_no_longer_kept_gets_a_snapshot(
    failing_bus: tuple[EventBus, FlakySource], owner: Actor, worker: Actor
) -> None:
    bus, _ = failing_bus
    job = await rendering_job(owner, worker)
    await jobs.report_progress(job.id, 30, actor=worker)
    # Its first changes are gone (pruned, or older than the history itself).
    await JobEventRecord.filter(job_id=job.id, sequence__lte=4).delete()
    updates = live.follow_job(bus, owner, job.id, after_sequence=2)
    snapshot = await anext(updates)
    assert snapshot.event is None and snapshot.job.sequence == 5
    assert snapshot.job.progress == 30
    await jobs.complete(job.id, actor=worker)
    rest = [update async for update in updates]
    assert [(u.event.sequence if u.event else None) for u in rest] == [6]

    # With no event of the job kept at all, the same.
    await JobEventRecord.filter(job_id=job.id).delete()
    updates = live.follow_job(bus, owner, job.id, after_sequence=3)
    assert [(u.event, u.job.status) for u in [await anext(updates)]] == [
        (None, JobStatus.COMPLETED)
    ]


async def test_a_replay_runs_through_an_earlier_attempt_that_ended_and_was_retried(
    failing_bus: tuple[EventBus, FlakySource], owner: Actor, worker: Actor
) -> None:
    bus, _ = failing_bus
    job = await jobs.submit_job(owner, submission())
    await jobs.cancel(job.id, "oops", actor=owner)  # 4: CANCELLED
    await jobs.retry(job.id, actor=owner)  # 5, 6, 7: PENDING, VALIDATING, QUEUED
    await jobs.claim_next(worker)  # 8
    await jobs.report_progress(job.id, 40, actor=worker)  # 9
    updates = live.follow_job(bus, owner, job.id, after_sequence=3)
    replayed = [await anext(updates) for _ in range(6)]
    assert [(u.event.sequence, u.job.status) for u in replayed if u.event] == [
        (4, JobStatus.CANCELLED),
        (5, JobStatus.PENDING),
        (6, JobStatus.VALIDATING),
        (7, JobStatus.QUEUED),
        (8, JobStatus.RENDERING),
        (9, JobStatus.RENDERING),
    ]
    await jobs.complete(job.id, actor=worker)
    rest = [update async for update in updates]  # the job's last change ends it
    assert [(u.event.sequence if u.event else None) for u in rest] == [10]
    # A replay that ends on the job's current, final state ends the stream.
    finished = live.follow_job(bus, owner, job.id, after_sequence=8)
    assert [(u.event.sequence if u.event else None) async for u in finished] == [9, 10]


async def test_a_cursor_beyond_the_latest_event_is_refused(
    failing_bus: tuple[EventBus, FlakySource], owner: Actor
) -> None:
    from domain.errors import BadUserInput
    from domain.events import Cursor

    bus, _ = failing_bus
    job = await jobs.submit_job(owner, submission())
    last = (await event_store.job_events(job.id, 0))[-1]
    ahead = Cursor(last.position + 5, 1, last.updated_at).encode()  # type: ignore[operator]
    with pytest.raises(BadUserInput) as refused:
        await anext(live.follow_events(bus, owner, after=ahead))
    assert refused.value.errors[0].field == "after"
    assert "beyond the latest event" in refused.value.errors[0].message
