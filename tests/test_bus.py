"""The event bus against the real database of the session: in-process on SQLite, LISTEN/NOTIFY
on PostgreSQL. Either way the events come from the job_events table, so the tests record their
made-up events there too. Every wait has a timeout, so a broken bus fails fast instead of
hanging."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
import pytest
import pytest_asyncio
from tortoise import connections
from tortoise.transactions import in_transaction

from domain.events import JobEvent, JobEventKind
from domain.policy import Actor
from domain.status import JobStatus
from domain.validation import JobSubmission
from models import Job
from models.base import utc_now
from service import event_store, jobs
from service.bus import (
    Delivery,
    EventBus,
    Gap,
    InProcessBus,
    PostgresBus,
    Subscription,
    create_bus,
)
from service.bus.postgres import listen_dsn
from tests.buses import FlakySource, started_bus

S = JobStatus
K = JobEventKind
WAIT = 5  # seconds, for every wait
POSTGRES_ONLY = "LISTEN/NOTIFY exists only on PostgreSQL (RENDERTRACK_TEST_DATABASE=postgres)"


@pytest.fixture
def source() -> FlakySource:
    return FlakySource()


@pytest_asyncio.fixture
async def bus(db: str, source: FlakySource) -> AsyncIterator[EventBus]:
    """The bus for this backend, started and installed as the publisher of the use cases."""
    async with started_bus(db, source) as started:
        yield started


def submission(name: str = "promo", priority: int = 5) -> JobSubmission:
    return JobSubmission(
        project_name=f"Project {name}",
        output_name=f"{name}.mp4",
        template_path=f"C:\\jobs\\{name}.aep",
        data_path=f"C:\\jobs\\{name}.json",
        output_path=f"C:\\renders\\{name}.mp4",
        priority=priority,
    )


def made_up_event(job: Job, kind: JobEventKind, sequence: int, progress: int = 0) -> JobEvent:
    """An event for a real job, recorded and published straight through the bus (no use
    case); its sequence must not collide with the job's real ones."""
    return JobEvent(
        kind=kind,
        job_id=job.id,
        user_id=job.user_id,
        status=S.RENDERING,
        previous_status=S.QUEUED if kind is K.STATUS_CHANGED else None,
        progress=progress,
        sequence=sequence,
        updated_at=utc_now(),
        state={"priority": 5},
    )


async def publish(bus: EventBus, events: Sequence[JobEvent]) -> list[JobEvent]:
    """What a use case does: record and stage inside the transaction, report after it."""
    async with in_transaction() as connection:
        recorded = await event_store.record(connection, events)
        await bus.stage(connection, recorded)
    await bus.committed(recorded)
    return recorded


async def receive(subscription: Subscription) -> Delivery | Gap:
    async with asyncio.timeout(WAIT):
        return await anext(subscription)


async def deliveries(subscription: Subscription, count: int) -> list[Delivery]:
    received = [await receive(subscription) for _ in range(count)]
    assert all(isinstance(item, Delivery) for item in received), received
    return received  # type: ignore[return-value]


def summary(items: Sequence[Delivery]) -> list[tuple[JobEventKind, JobStatus, int]]:
    return [(d.event.kind, d.event.status, d.event.progress) for d in items]


class Collector:
    """A fast subscriber: reads everything as it comes, in a task of its own."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.items: list[Delivery | Gap] = []
        self._arrived = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for item in self.subscription:
                self.items.append(item)
                self._arrived.set()
        finally:
            self.subscription.close()

    async def until(self, done: Callable[[list[Delivery | Gap]], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not done(self.items):
                self._arrived.clear()
                await self._arrived.wait()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def after(job: Job) -> Callable[[JobEvent], bool]:
    """Events of `job` newer than the row we hold."""
    job_id, seen = job.id, job.sequence
    return lambda event: event.job_id == job_id and event.sequence > seen


def has_event(job: Job, sequence: int) -> Callable[[list[Delivery | Gap]], bool]:
    def done(items: list[Delivery | Gap]) -> bool:
        return any(
            isinstance(i, Delivery) and (i.event.job_id, i.event.sequence) == (job.id, sequence)
            for i in items
        )

    return done


# --- 1. the lifecycle of one job, in order -----------------------------------------------------


async def test_a_subscriber_receives_every_change_of_a_job_in_order_with_its_row(
    bus: EventBus, owner: Actor, worker: Actor
) -> None:
    async with bus.subscribe(lambda event: event.user_id == owner.id) as subscription:
        job = await jobs.submit_job(owner, submission())
        received = await deliveries(subscription, 3)
        assert await jobs.claim_next(worker) is not None
        received += await deliveries(subscription, 1)
        for progress in (10, 50, 90):
            await jobs.report_progress(job.id, progress, actor=worker)
            received += await deliveries(subscription, 1)
        await jobs.complete(job.id, actor=worker)
        received += await deliveries(subscription, 1)

        assert summary(received) == [
            (K.CREATED, S.PENDING, 0),
            (K.STATUS_CHANGED, S.VALIDATING, 0),
            (K.STATUS_CHANGED, S.QUEUED, 0),
            (K.STATUS_CHANGED, S.RENDERING, 0),
            (K.PROGRESS, S.RENDERING, 10),
            (K.PROGRESS, S.RENDERING, 50),
            (K.PROGRESS, S.RENDERING, 90),
            (K.STATUS_CHANGED, S.COMPLETED, 100),
        ]
        sequences = [d.event.sequence for d in received]
        assert sequences == sorted(set(sequences))
        for delivery in received:
            assert delivery.event.job_id == job.id
            # The job exactly as that change left it, not as it is by the time it arrives.
            assert delivery.job.id == job.id and delivery.job.project_name == "Project promo"
            assert delivery.job.sequence == delivery.event.sequence
            assert (delivery.job.status, delivery.job.progress) == (
                delivery.event.status,
                delivery.event.progress,
            )
        assert received[3].job.worker_id == worker.id and received[3].job.attempts == 1
        assert received[2].job.worker_id is None and received[2].job.started_at is None
        assert received[-1].job.completed_at is not None and received[-2].job.completed_at is None
        assert received[-1].job is not None and received[-1].job.status is S.COMPLETED
        assert subscription.pending == 0
    assert bus.subscriber_count == 0


# --- 2. filtering ------------------------------------------------------------------------------


async def test_a_subscriber_sees_only_the_events_it_matches(
    bus: EventBus, owner: Actor, worker: Actor
) -> None:
    job_a = await jobs.submit_job(owner, submission("a", priority=9))
    job_b = await jobs.submit_job(owner, submission("b", priority=1))
    only_a = bus.subscribe(after(job_a))
    only_b = bus.subscribe(after(job_b))
    everything = Collector(bus.subscribe(lambda event: True))
    try:
        for job in (job_a, job_b):
            claimed = await jobs.claim_next(worker)
            assert claimed is not None and claimed.id == job.id
            await jobs.report_progress(job.id, 40, actor=worker)
            await jobs.complete(job.id, actor=worker)
        # Every subscriber is served by the same ordered dispatch: once the catch-all has B's
        # last event, the others have everything they will ever get from these changes.
        finished = await Job.get(id=job_b.id)
        await everything.until(has_event(job_b, finished.sequence))

        seen_a = await deliveries(only_a, only_a.pending)
        seen_b = await deliveries(only_b, only_b.pending)
        assert summary(seen_a) == [
            (K.STATUS_CHANGED, S.RENDERING, 0),
            (K.PROGRESS, S.RENDERING, 40),
            (K.STATUS_CHANGED, S.COMPLETED, 100),
        ]
        assert summary(seen_b) == summary(seen_a)
        assert {d.event.job_id for d in seen_a} == {job_a.id}
        assert {d.event.job_id for d in seen_b} == {job_b.id}
    finally:
        only_a.close()
        only_b.close()
        await everything.stop()


# --- 3. routing, and one read per job whatever the number of subscribers ----------------------


async def test_the_job_is_read_once_for_200_subscribers_and_never_when_unwanted(
    bus: EventBus, source: FlakySource, owner: Actor, worker: Actor
) -> None:
    watched = await jobs.submit_job(owner, submission("watched", priority=9))
    fence = await jobs.submit_job(owner, submission("fence", priority=1))
    source.job_reads.clear()

    subscriptions = [bus.subscribe(after(watched), job_id=watched.id) for _ in range(200)]
    await jobs.claim_next(worker)
    await jobs.report_progress(watched.id, 30, actor=worker)
    rows: list[set[int]] = [set(), set()]
    for subscription in subscriptions:
        received = await deliveries(subscription, 2)
        assert summary(received) == [
            (K.STATUS_CHANGED, S.RENDERING, 0),
            (K.PROGRESS, S.RENDERING, 30),
        ]
        for index, delivery in enumerate(received):
            assert delivery.job.id == watched.id
            rows[index].add(id(delivery.job))
    assert source.job_reads == [[watched.id]]  # its submitted columns, once; then cached
    assert [len(shared) for shared in rows] == [1, 1]  # one job object, handed to all 200
    for subscription in subscriptions:
        subscription.close()
    assert bus.subscriber_count == 0

    # Nobody wants the watched job any more: its events cost no read of a job.
    source.job_reads.clear()
    fence_watchers = [bus.subscribe(after(fence), job_id=fence.id) for _ in range(200)]
    await jobs.report_progress(watched.id, 60, actor=worker)
    await jobs.complete(watched.id, actor=worker)
    await jobs.claim_next(worker)  # the fence: dispatched after the two events above
    for subscription in fence_watchers:
        assert summary(await deliveries(subscription, 1)) == [(K.STATUS_CHANGED, S.RENDERING, 0)]
        subscription.close()
    assert source.job_reads == [[fence.id]]


async def test_events_are_routed_by_job_and_by_owner_without_asking_other_subscribers(
    bus: EventBus, owner: Actor, admin: Actor, worker: Actor
) -> None:
    asked: list[str] = []

    def counting(name: str) -> Callable[[JobEvent], bool]:
        def match(event: JobEvent) -> bool:
            asked.append(name)
            return True

        return match

    mine = await jobs.submit_job(owner, submission("mine"))
    theirs = await jobs.submit_job(admin, submission("theirs", priority=1))
    by_job = [bus.subscribe(counting(f"job{n}"), job_id=theirs.id) for n in range(50)]
    by_owner = [bus.subscribe(counting(f"owner{n}"), owner_id=admin.id) for n in range(50)]
    everything = Collector(bus.subscribe(counting("all")))
    try:
        # The submissions' own events may still be on their way: a change made now is
        # dispatched after them, so once it arrived everything before it has passed.
        fence = await jobs.set_priority(theirs.id, 2, actor=admin)
        await everything.until(has_event(theirs, fence.sequence))
        for subscription in by_job + by_owner:
            await deliveries(subscription, subscription.pending)
        asked.clear()
        claimed = await jobs.claim_next(worker)
        assert claimed is not None and claimed.id == mine.id
        await everything.until(has_event(mine, claimed.sequence))
        assert asked == ["all"]  # the owner's job is nobody else's business
        asked.clear()
        claimed = await jobs.claim_next(worker)
        assert claimed is not None and claimed.id == theirs.id
        await everything.until(has_event(theirs, claimed.sequence))
        assert sorted(asked) == sorted(
            ["all", *(f"job{n}" for n in range(50))] + [f"owner{n}" for n in range(50)]
        )
        for subscription in by_job + by_owner:
            assert [d.event.job_id for d in await deliveries(subscription, 1)] == [theirs.id]
    finally:
        for subscription in by_job + by_owner:
            subscription.close()
        await everything.stop()
    assert bus.subscriber_count == 0


# --- 4. slow subscribers: bounded buffers, and a GAP instead of silence -----------------------


async def test_a_slow_subscriber_keeps_only_the_latest_progress(
    bus: EventBus, owner: Actor
) -> None:
    job = await jobs.submit_job(owner, submission())
    slow = bus.subscribe(after(job))
    fast = Collector(bus.subscribe(after(job)))
    try:
        events = [made_up_event(job, K.PROGRESS, 100 + n, progress=n % 101) for n in range(1000)]
        for start in range(0, len(events), 100):
            await publish(bus, events[start : start + 100])
        await fast.until(has_event(job, 1099))

        assert 1 <= slow.pending <= 3
        left = await deliveries(slow, slow.pending)
        assert left[-1].event.sequence == 1099 and left[-1].event.progress == 999 % 101
        assert [d.event.sequence for d in left] == sorted(d.event.sequence for d in left)
        # What a delivery stands for runs back to the first change it replaced.
        assert left[0].first_sequence == 100
        assert all(b.first_sequence == a.event.sequence + 1 for a, b in itertools.pairwise(left))
        assert slow.gaps == 0
    finally:
        slow.close()
        await fast.stop()


async def test_a_subscriber_too_far_behind_gets_one_gap_and_keeps_receiving(
    bus: EventBus, owner: Actor
) -> None:
    job = await jobs.submit_job(owner, submission())
    kinds = [K.STATUS_CHANGED, K.LOG, K.PRIORITY_CHANGED, K.PROGRESS]
    events = [made_up_event(job, kinds[n % 4], 100 + n, progress=n) for n in range(40)]
    slow = bus.subscribe(after(job), buffer_size=8)
    fast = Collector(bus.subscribe(after(job)))
    try:
        recorded = []
        for event in events:
            recorded += await publish(bus, [event])
        await fast.until(has_event(job, 139))

        assert [d.event for d in fast.items if isinstance(d, Delivery)] == recorded
        # Nothing dropped in silence: a GAP first (replay from the table), then what came after.
        first = await receive(slow)
        assert isinstance(first, Gap) and slow.gaps >= 1
        rest = await deliveries(slow, slow.pending)
        assert 1 <= len(rest) <= 8 and rest[-1].event.sequence == 139
        assert bus.subscriber_count == 2
    finally:
        slow.close()
        await fast.stop()
    assert bus.subscriber_count == 0


async def test_progress_coalesces_only_into_the_last_pending_item_of_its_job(
    bus: EventBus, owner: Actor
) -> None:
    job = await jobs.submit_job(owner, submission())
    subscription = bus.subscribe(after(job))
    fast = Collector(bus.subscribe(after(job)))
    try:
        sequence = [
            made_up_event(job, K.PROGRESS, 10, progress=1),
            made_up_event(job, K.PROGRESS, 11, progress=2),  # replaces 10
            made_up_event(job, K.LOG, 12),
            made_up_event(job, K.PROGRESS, 13, progress=3),  # after the LOG: kept
            made_up_event(job, K.PROGRESS, 14, progress=4),  # replaces 13
        ]
        for event in sequence:
            await publish(bus, [event])
        await fast.until(has_event(job, 14))
        received = await deliveries(subscription, subscription.pending)
        assert [(d.event.kind, d.first_sequence, d.event.sequence) for d in received] == [
            (K.PROGRESS, 10, 11),
            (K.LOG, 12, 12),
            (K.PROGRESS, 13, 14),
        ]
    finally:
        subscription.close()
        await fast.stop()


# --- 4b. a failed read loses nothing ----------------------------------------------------------


async def test_a_failed_read_of_the_table_is_retried_and_loses_no_event(
    bus: EventBus, source: FlakySource, owner: Actor, worker: Actor
) -> None:
    job = await jobs.submit_job(owner, submission())
    async with bus.subscribe(after(job), job_id=job.id) as subscription:
        source.failures_to_come = 3
        await jobs.claim_next(worker)
        await jobs.complete(job.id, actor=worker)
        received = await deliveries(subscription, 2)
        assert summary(received) == [
            (K.STATUS_CHANGED, S.RENDERING, 0),
            (K.STATUS_CHANGED, S.COMPLETED, 100),
        ]
        assert source.failures_to_come == 0


async def test_an_event_committed_by_a_request_cancelled_after_its_commit_still_arrives(
    bus: EventBus, owner: Actor, worker: Actor
) -> None:
    job = await jobs.submit_job(owner, submission())
    claimed = await jobs.claim_next(worker)
    assert claimed is not None
    async with bus.subscribe(after(claimed), job_id=job.id) as subscription:
        committed = asyncio.Event()
        real_committed = bus.committed

        async def cancelled_after_commit(events: Sequence[JobEvent]) -> None:
            committed.set()
            raise asyncio.CancelledError  # the request dies right after its transaction

        bus.committed = cancelled_after_commit  # type: ignore[method-assign]
        try:
            with pytest.raises(asyncio.CancelledError):
                await jobs.complete(job.id, actor=worker)
        finally:
            bus.committed = real_committed  # type: ignore[method-assign]
        assert committed.is_set()
        received = await deliveries(subscription, 1)
        assert summary(received) == [(K.STATUS_CHANGED, S.COMPLETED, 100)]


# --- 5. subscriptions do not leak -------------------------------------------------------------


async def test_cancelled_consumers_unregister_their_subscriptions(
    bus: EventBus, owner: Actor
) -> None:
    async def consume(subscription: Subscription) -> None:
        try:
            async for _ in subscription:
                pass
        finally:
            subscription.close()

    tasks = [
        asyncio.create_task(consume(bus.subscribe(lambda e: e.user_id == owner.id)))
        for _ in range(200)
    ]
    await asyncio.sleep(0)  # every consumer is now waiting for its first item
    assert bus.subscriber_count == 200
    await jobs.submit_job(owner, submission())
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*tasks, return_exceptions=True)
    assert bus.subscriber_count == 0


async def test_a_forgotten_subscription_does_not_stay_registered(bus: EventBus) -> None:
    bus.subscribe(lambda e: True)
    gc.collect()
    assert bus.subscriber_count == 0


async def test_stop_ends_every_subscription_and_is_idempotent(db: str) -> None:
    bus = create_bus(db, FlakySource())
    await bus.start()
    subscription = bus.subscribe(lambda e: True)
    waiting = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    await bus.stop()
    await bus.stop()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(WAIT):
            await waiting
    assert subscription.closed and bus.subscriber_count == 0
    with pytest.raises(RuntimeError):
        bus.subscribe(lambda e: True)


def test_the_bus_follows_the_database_url() -> None:
    assert isinstance(create_bus("sqlite://data/x.sqlite3"), InProcessBus)
    assert isinstance(create_bus("postgres://u@h:5432/d"), PostgresBus)


def test_the_listen_connection_url_drops_tortoise_pool_options() -> None:
    assert listen_dsn("postgres://u:p@h:5432/d?minsize=1&maxsize=5&sslmode=require") == (
        "postgresql://u:p@h:5432/d?sslmode=require"
    )


# --- 6. PostgreSQL: transactions, other processes, reconnects ----------------------------------


async def test_a_rolled_back_change_notifies_nobody_a_committed_one_does(
    bus: EventBus, backend: str, owner: Actor
) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    job = await jobs.submit_job(owner, submission())
    async with bus.subscribe(after(job)) as subscription:
        with pytest.raises(RuntimeError, match="roll back"):
            async with in_transaction() as connection:
                recorded = await event_store.record(
                    connection, [made_up_event(job, K.STATUS_CHANGED, 50)]
                )
                await bus.stage(connection, recorded)
                raise RuntimeError("roll back")
        await publish(bus, [made_up_event(job, K.STATUS_CHANGED, 51)])
        received = await deliveries(subscription, 1)
        assert [d.event.sequence for d in received] == [51]
        await asyncio.sleep(0.1)
        assert subscription.pending == 0


async def test_another_process_receives_the_events(
    bus: EventBus, backend: str, db: str, owner: Actor, worker: Actor
) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    other_source = FlakySource()
    other = PostgresBus(db, other_source)
    await other.start()
    try:
        async with other.subscribe(lambda e: e.user_id == owner.id) as subscription:
            job = await jobs.submit_job(owner, submission())
            await jobs.claim_next(worker)
            received = await deliveries(subscription, 4)
            assert summary(received) == [
                (K.CREATED, S.PENDING, 0),
                (K.STATUS_CHANGED, S.VALIDATING, 0),
                (K.STATUS_CHANGED, S.QUEUED, 0),
                (K.STATUS_CHANGED, S.RENDERING, 0),
            ]
            assert all(d.job.id == job.id for d in received)
            assert other_source.job_reads == [[job.id]]
    finally:
        await other.stop()


async def test_a_malformed_notification_is_skipped(
    bus: EventBus, backend: str, owner: Actor
) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    assert isinstance(bus, PostgresBus)
    job = await jobs.submit_job(owner, submission())
    async with bus.subscribe(after(job)) as subscription:
        for junk in ("not json", "[1, 2]", '{"kind": "EXPLODED"}', "{"):
            await connections.get("default").execute_query(
                "SELECT pg_notify($1, $2)", [bus.channel, junk]
            )
        await publish(bus, [made_up_event(job, K.LOG, 60)])
        assert [d.event.sequence for d in await deliveries(subscription, 1)] == [60]


async def test_what_commits_while_the_listen_connection_is_down_arrives_after_it_is_back(
    bus: EventBus, backend: str, owner: Actor
) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    assert isinstance(bus, PostgresBus)
    job = await jobs.submit_job(owner, submission())
    subscriptions = [bus.subscribe(after(job)) for _ in range(3)]
    killed = bus.listen_backend_pid
    assert killed is not None
    await connections.get("default").execute_query("SELECT pg_terminate_backend($1)", [killed])
    # Committed while nobody listens: its notification is gone, the table keeps it.
    await publish(bus, [made_up_event(job, K.STATUS_CHANGED, 70)])

    for subscription in subscriptions:
        assert [d.event.sequence for d in await deliveries(subscription, 1)] == [70]
    async with asyncio.timeout(WAIT):  # the LISTEN connection comes back
        while bus.listen_backend_pid in (None, killed):
            await asyncio.sleep(0.05)
    await publish(bus, [made_up_event(job, K.STATUS_CHANGED, 71)])
    for subscription in subscriptions:
        assert [d.event.sequence for d in await deliveries(subscription, 1)] == [71]
        subscription.close()


async def test_the_listen_connection_comes_back_once_the_database_accepts_connections_again(
    bus: EventBus, backend: str, db: str, owner: Actor
) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    assert isinstance(bus, PostgresBus)
    job = await jobs.submit_job(owner, submission())
    subscription = bus.subscribe(after(job))
    name = db.rsplit("/", 1)[1]
    # A database cannot refuse connections to itself: ask from the server's default database.
    admin = await asyncpg.connect(listen_dsn(db.rsplit("/", 1)[0] + "/postgres"))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", bus.listen_backend_pid)
            await asyncio.sleep(0.5)  # a few refused reconnects, backing off
            assert bus.listen_backend_pid is None
            assert subscription.pending == 0
            # Nobody listens: the change still arrives, read from the table (the pool's open
            # connections still work).
            await publish(bus, [made_up_event(job, K.LOG, 79)])
            assert [d.event.sequence for d in await deliveries(subscription, 1)] == [79]
            assert bus.listen_backend_pid is None
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()
    async with asyncio.timeout(WAIT):
        while bus.listen_backend_pid is None:
            await asyncio.sleep(0.05)
    await publish(bus, [made_up_event(job, K.LOG, 80)])
    assert [d.event.sequence for d in await deliveries(subscription, 1)] == [80]
    subscription.close()
