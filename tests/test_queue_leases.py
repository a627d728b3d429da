"""The queue left running unattended: leases, the sweeper's duties, backoff, deadlines, and a
claim whose cost does not grow with history. Time is moved with service.clock, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from tortoise import connections

from app.factory import create_app
from app.settings import Settings
from domain.errors import BadUserInput, Conflict, InvalidTransition
from domain.events import JobEventKind
from domain.policy import Actor
from domain.status import JobStatus
from models import Job, User
from service import clock, job_store, jobs, settings, sweeper
from service.bus import create_bus
from service.events import RecordingPublisher, set_publisher
from service.live import follow_job
from service.settings import ServiceSettings
from testkit.sql_log import capture_sql
from tests.factories import VALID_JOB_FIELDS, valid_submission
from tests.live_server import serve

S = JobStatus
TIMEOUT = 600.0


@pytest.fixture
def stall_timeout() -> Iterator[float]:
    previous = settings.configure(ServiceSettings(stall_timeout_seconds=TIMEOUT))
    yield TIMEOUT
    settings.configure(previous)


async def rendering(owner: Actor, worker: Actor, **submission: object) -> Job:
    await jobs.submit_job(owner, valid_submission(**submission))
    claimed = await jobs.claim_next(worker)
    assert claimed is not None
    return claimed


async def stored(job_id: str) -> Job:
    return await Job.get(id=job_id)


# --- leases ------------------------------------------------------------------------------------


async def test_a_claim_is_a_lease_and_every_report_renews_it(
    owner: Actor, worker: Actor, recorder: RecordingPublisher
) -> None:
    job = await rendering(owner, worker)
    row = await stored(job.id)
    assert row.worker_id == worker.id and row.attempts == 1
    assert row.heartbeat_at is not None and row.heartbeat_at == row.started_at

    clock.advance(100)
    await jobs.report_progress(job.id, 10, actor=worker)
    after_progress = (await stored(job.id)).heartbeat_at
    assert after_progress is not None and after_progress >= row.heartbeat_at + timedelta(seconds=99)

    clock.advance(100)
    await jobs.report_progress(job.id, 5, actor=worker)  # late, ignored, still a sign of life
    after_late = await stored(job.id)
    assert after_late.progress == 10
    assert after_late.heartbeat_at >= after_progress + timedelta(seconds=99)

    clock.advance(100)
    recorder.clear()
    sequence = after_late.sequence
    await jobs.heartbeat(job.id, actor=worker)
    after_beat = await stored(job.id)
    assert after_beat.heartbeat_at >= after_late.heartbeat_at + timedelta(seconds=99)
    assert after_beat.sequence == sequence and recorder.events == []  # not a change to follow

    clock.advance(100)
    await jobs.append_log(job.id, ["frame 12 of 300"], actor=worker)
    assert (await stored(job.id)).heartbeat_at >= after_beat.heartbeat_at + timedelta(seconds=99)


async def test_a_silent_worker_loses_its_job_then_the_job_fails_after_its_last_attempt(
    owner: Actor, worker: Actor, recorder: RecordingPublisher, stall_timeout: float
) -> None:
    await jobs.submit_job(owner, valid_submission(max_attempts=2))
    first = await jobs.claim_next(worker)
    assert first is not None
    queued_at = (await stored(first.id)).queued_at

    clock.advance(stall_timeout - 1)
    assert (await sweeper.sweep_once()).acted == 0  # not silent long enough
    clock.advance(2)
    recorder.clear()
    report = await sweeper.sweep_once()
    assert (report.requeued, report.failed) == (1, 0)
    requeued = await stored(first.id)
    assert requeued.status is S.QUEUED and requeued.worker_id is None
    assert requeued.queued_at == queued_at  # it keeps its place
    assert requeued.attempts == 1 and requeued.heartbeat_at is None
    last_line = (await jobs.log_text(requeued)).splitlines()[-1]
    assert "worker Worker (" in last_line and worker.id in last_line
    assert "silent for 601 s" in last_line and "attempt 1 of 2" in last_line
    assert [(e.kind, e.previous_status, e.status) for e in recorder.events] == [
        (JobEventKind.STATUS_CHANGED, S.RENDERING, S.QUEUED)
    ]

    # The silent worker comes back: the job is no longer its own.
    with pytest.raises(Exception) as late:
        await jobs.report_progress(first.id, 50, actor=worker)
    assert getattr(late.value, "code", None) in {"NOT_FOUND", "FORBIDDEN"}

    second = await jobs.claim_next(worker)
    assert second is not None and second.id == first.id and second.attempts == 2
    clock.advance(stall_timeout + 5)
    report = await sweeper.sweep_once()
    assert (report.requeued, report.failed) == (0, 1)
    failed = await stored(first.id)
    assert failed.status is S.FAILED
    assert failed.error_message is not None
    assert worker.id in failed.error_message and "silent for 605 s" in failed.error_message
    assert "attempt 2 of 2" in failed.error_message and "no attempts left" in failed.error_message
    assert (await sweeper.sweep_once()).acted == 0  # done is done


async def test_a_worker_that_keeps_reporting_is_never_swept(
    owner: Actor, worker: Actor, stall_timeout: float
) -> None:
    job = await rendering(owner, worker)
    for _ in range(5):
        clock.advance(stall_timeout - 10)
        await jobs.heartbeat(job.id, actor=worker)
        assert (await sweeper.sweep_once()).acted == 0
    assert (await stored(job.id)).status is S.RENDERING


async def test_a_jobupdated_subscriber_sees_each_step_of_a_stall(
    owner: Actor, worker: Actor, stall_timeout: float, db: str
) -> None:
    bus = create_bus(db)
    await bus.start()
    previous = set_publisher(bus)
    try:
        await jobs.submit_job(owner, valid_submission(max_attempts=1))
        job = await jobs.claim_next(worker)
        assert job is not None
        stream = follow_job(bus, owner, job.id)
        snapshot = await anext(stream)
        assert snapshot.event is None and snapshot.job.status is S.RENDERING
        clock.advance(stall_timeout + 1)
        assert (await sweeper.sweep_once()).failed == 1
        async with asyncio.timeout(10):
            update = await anext(stream)
        assert update.event is not None
        assert (update.event.previous_status, update.event.status) == (S.RENDERING, S.FAILED)
        assert "no attempts left" in update.job.error_message
        with pytest.raises(StopAsyncIteration):  # a terminal job ends the stream
            async with asyncio.timeout(10):
                await anext(stream)
    finally:
        set_publisher(previous)
        await bus.stop()


# --- hand-backs and failures ------------------------------------------------------------------


async def test_a_hand_back_gives_the_attempt_back(owner: Actor, worker: Actor) -> None:
    job = await rendering(owner, worker)
    queued_at = (await stored(job.id)).queued_at
    back = await jobs.requeue(job.id, actor=worker)
    assert back.status is S.QUEUED and back.attempts == 0 and back.worker_id is None
    row = await stored(job.id)
    assert row.queued_at == queued_at and row.heartbeat_at is None
    assert "handed back" in (await jobs.log_text(row)).splitlines()[-1]


async def test_retryable_failures_back_off_doubling_then_fail(owner: Actor, worker: Actor) -> None:
    backoff = settings.current().retry_backoff_seconds
    await jobs.submit_job(owner, valid_submission(max_attempts=3))
    job = await jobs.claim_next(worker)
    assert job is not None

    failed_once = await jobs.fail(job.id, "GPU driver reset", actor=worker, retryable=True)
    assert failed_once.status is S.QUEUED and failed_once.error_message is None
    assert failed_once.not_before is not None
    waits = (failed_once.not_before - clock.now()).total_seconds()
    assert backoff - 2 < waits <= backoff
    assert await jobs.claim_next(worker) is None  # held back by the backoff
    clock.advance(backoff - 1)
    assert await jobs.claim_next(worker) is None
    clock.advance(2)
    again = await jobs.claim_next(worker)
    assert again is not None and again.id == job.id and again.attempts == 2

    await jobs.fail(job.id, "GPU driver reset", actor=worker, retryable=True)
    clock.advance(backoff * 2 - 1)
    assert await jobs.claim_next(worker) is None  # twice as long the second time
    clock.advance(2)
    third = await jobs.claim_next(worker)
    assert third is not None and third.attempts == 3

    last = await jobs.fail(job.id, "GPU driver reset", actor=worker, retryable=True)
    assert last.status is S.FAILED
    assert last.error_message == "GPU driver reset (attempt 3 of 3; no attempts left)"
    log = await jobs.log_text(await stored(job.id))
    assert "attempt 1 of 3 failed: GPU driver reset" in log
    assert "attempt 2 of 3 failed: GPU driver reset" in log


async def test_a_job_in_backoff_does_not_hold_up_the_queue(owner: Actor, worker: Actor) -> None:
    await jobs.submit_job(owner, valid_submission(priority=10))
    urgent = await jobs.claim_next(worker)
    assert urgent is not None
    await jobs.fail(urgent.id, "out of memory", actor=worker, retryable=True)
    other = await jobs.submit_job(owner, valid_submission(priority=1))
    claimed = await jobs.claim_next(worker)
    assert claimed is not None and claimed.id == other.id


# --- deadlines ----------------------------------------------------------------------------------


async def test_a_deadline_cancels_a_queued_and_a_rendering_job(
    owner: Actor, worker: Actor, recorder: RecordingPublisher
) -> None:
    deadline = clock.now() + timedelta(seconds=30)
    rendering_job = await rendering(owner, worker, auto_cancel_at=deadline)
    queued_job = await jobs.submit_job(owner, valid_submission(auto_cancel_at=deadline))
    untimed = await jobs.submit_job(owner, valid_submission())

    assert (await sweeper.sweep_once()).acted == 0
    clock.advance(31)
    recorder.clear()
    report = await sweeper.sweep_once()
    assert report.cancelled == 2
    for job_id, was in ((rendering_job.id, S.RENDERING), (queued_job.id, S.QUEUED)):
        row = await stored(job_id)
        assert row.status is S.CANCELLED and row.completed_at is not None
        assert row.cancelled_reason is not None
        assert deadline.isoformat() in row.cancelled_reason
        assert row.cancelled_reason in await jobs.log_text(row)  # on the record too
        assert f"while it was {was.value}" in row.cancelled_reason
    assert (await stored(untimed.id)).status is S.QUEUED
    assert sorted((e.job_id, e.status) for e in recorder.events) == sorted(
        [(rendering_job.id, S.CANCELLED), (queued_job.id, S.CANCELLED)]
    )

    # The worker's next report of any kind is refused, naming CANCELLED, so it stops.
    reports = [
        jobs.report_progress(rendering_job.id, 50, actor=worker),
        jobs.heartbeat(rendering_job.id, actor=worker),
        jobs.append_log(rendering_job.id, ["still here"], actor=worker),
        jobs.complete(rendering_job.id, actor=worker),
        jobs.fail(rendering_job.id, "stopped", actor=worker),
        jobs.fail(rendering_job.id, "stopped", actor=worker, retryable=True),
    ]
    for report_call in reports:
        with pytest.raises(InvalidTransition) as refused:
            await report_call
        assert refused.value.found == "CANCELLED"
    assert (await stored(rendering_job.id)).status is S.CANCELLED


async def test_a_job_past_its_deadline_is_not_claimed_even_before_the_sweep(
    owner: Actor, worker: Actor
) -> None:
    await jobs.submit_job(
        owner, valid_submission(auto_cancel_at=clock.now() + timedelta(seconds=5))
    )
    clock.advance(6)
    assert await jobs.claim_next(worker) is None


# --- several sweepers, outages, the server's task ------------------------------------------------


async def test_racing_sweepers_act_on_each_job_exactly_once(
    backend: str,
    owner: Actor,
    worker: Actor,
    recorder: RecordingPublisher,
    stall_timeout: float,
) -> None:
    stalled = [await rendering(owner, worker) for _ in range(12)]
    deadline = clock.now() + timedelta(seconds=60)
    overdue = [
        await jobs.submit_job(owner, valid_submission(auto_cancel_at=deadline)) for _ in range(12)
    ]
    clock.advance(stall_timeout + 1)
    recorder.clear()

    reports = await asyncio.gather(*(sweeper.sweep_once() for _ in range(4)))

    assert sum(r.requeued for r in reports) == len(stalled)
    assert sum(r.cancelled for r in reports) == len(overdue)
    acted_on = [event.job_id for event in recorder.events]
    assert sorted(acted_on) == sorted(job.id for job in stalled + overdue)  # once each
    for job in stalled:
        assert (await stored(job.id)).status is S.QUEUED
    for job in overdue:
        assert (await stored(job.id)).status is S.CANCELLED


async def test_the_sweeper_survives_a_database_failure_and_stops_cleanly(
    owner: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    overdue = await jobs.submit_job(
        owner, valid_submission(auto_cancel_at=clock.now() + timedelta(seconds=5))
    )
    clock.advance(6)
    connection = connections.get("default")
    stop = asyncio.Event()
    await connection.execute_script('ALTER TABLE "jobs" RENAME TO "jobs_away"')
    try:
        with caplog.at_level(logging.ERROR, logger="service.sweeper"):
            task = asyncio.create_task(sweeper.run_sweeper(0.05, stop))
            async with asyncio.timeout(10):
                while not any("Sweep failed" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.01)
    finally:
        await connection.execute_script('ALTER TABLE "jobs_away" RENAME TO "jobs"')
    async with asyncio.timeout(10):  # the next round, with the table back, does the work
        while (await stored(overdue.id)).status is not S.CANCELLED:
            await asyncio.sleep(0.02)
    assert not task.done()
    stop.set()
    async with asyncio.timeout(5):
        await task  # returns by itself once told to stop


async def test_silence_is_judged_only_after_the_database_was_reachable_for_a_whole_timeout(
    owner: Actor, worker: Actor, stall_timeout: float
) -> None:
    """A server (or database) that was down longer than the stall timeout does not take every
    render from its worker when it comes back: the workers could not report meanwhile."""
    job = await rendering(owner, worker)
    clock.advance(stall_timeout * 3)  # the outage: nobody could report
    stop = asyncio.Event()
    task = asyncio.create_task(sweeper.run_sweeper(0.02, stop))
    try:
        for _ in range(10):  # several rounds pass: the job stays with its worker
            await asyncio.sleep(0.02)
        assert (await stored(job.id)).status is S.RENDERING
        await jobs.heartbeat(job.id, actor=worker)  # the worker is back in touch: it keeps it
        clock.advance(stall_timeout + 1)  # then it really goes silent for a whole timeout
        async with asyncio.timeout(10):
            while (await stored(job.id)).status is not S.QUEUED:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task


async def test_the_server_runs_the_sweeper_and_stops_it(db: str) -> None:
    app = create_app(Settings(database_url=db, sweep_interval_seconds=0.05), manage_database=False)
    async with serve(app):
        running = [t for t in asyncio.all_tasks() if t.get_name() == "sweeper"]
        assert len(running) == 1 and not running[0].done()
    assert running[0].done() and not running[0].cancelled()


async def test_the_sweeper_recovers_a_job_of_a_real_server(
    db: str, owner: Actor, worker: Actor
) -> None:
    """End to end in one server: a claimed job whose worker says nothing is back in the queue
    after the stall timeout, with nobody calling the sweeper by hand."""
    app = create_app(
        Settings(database_url=db, sweep_interval_seconds=0.05, stall_timeout_seconds=0.2),
        manage_database=False,
    )
    async with serve(app):
        job = await rendering(owner, worker)
        async with asyncio.timeout(10):
            while (await stored(job.id)).status is not S.QUEUED:
                await asyncio.sleep(0.05)
    row = await stored(job.id)
    assert row.worker_id is None and row.attempts == 1


# --- the claim and the duties read indexes, not history -----------------------------------------


async def insert_finished(owner: User, count: int, statuses: tuple[S, ...] = ()) -> None:
    statuses = statuses or (S.COMPLETED, S.FAILED, S.CANCELLED)
    rows = [
        Job(user=owner, status=statuses[i % len(statuses)], **valid_job_fields(f"done {i}"))
        for i in range(count)
    ]
    await Job.bulk_create(rows, batch_size=1000)


def valid_job_fields(project: str) -> dict[str, object]:
    return {**VALID_JOB_FIELDS, "project_name": project}


async def claim_statement(owner: Actor, worker: Actor) -> tuple[str, list[object]]:
    """The SQL (and its parameters) with which claim_next reads the job to claim."""
    with capture_sql() as seen:
        await jobs.submit_job(owner, valid_submission())
        assert await jobs.claim_next(worker) is not None
    captured = [
        (statement.text, statement.parameters)
        for statement in seen
        if statement.parameters is not None
        and "ORDER BY" in statement.text
        and "QUEUED" in statement.text
    ]
    assert captured, "the claim's SELECT was not seen"
    return captured[0]


async def explain(sql: str, values: list[object], *, analyze: bool = False) -> str:
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
        rows = await connection.execute_query_dict(
            prefix + sql.replace(" FOR UPDATE SKIP LOCKED", ""), values
        )
        return "\n".join(row["QUERY PLAN"] for row in rows)
    rows = await connection.execute_query_dict("EXPLAIN QUERY PLAN " + sql, values)
    return "\n".join(str(row["detail"]) for row in rows)


async def test_the_claim_reads_the_partial_queue_index(
    owner: Actor, worker: Actor, user: User
) -> None:
    await insert_finished(user, 300)
    for _ in range(20):
        await jobs.submit_job(owner, valid_submission())
    sql, values = await claim_statement(owner, worker)
    plan = await explain(sql, values)
    assert "idx_jobs_claim" in plan, plan
    assert "SCAN jobs\n" not in plan + "\n" and "Seq Scan" not in plan, plan


@pytest.mark.postgres_only
async def test_the_claim_costs_the_same_beside_many_finished_and_queued_jobs(
    backend: str, owner: Actor, worker: Actor, user: User
) -> None:
    if backend != "postgres":
        pytest.skip("reads PostgreSQL's buffer counts")
    connection = connections.get("default")

    async def buffers() -> int:
        await connection.execute_script('ANALYZE "jobs"')
        sql, values = await claim_statement(owner, worker)
        plan = await explain(sql, values, analyze=True)
        top = next(line for line in plan.splitlines() if "Buffers:" in line)
        return sum(int(part.split("=")[1]) for part in top.split(":")[1].split() if "=" in part)

    for _ in range(10):
        await jobs.submit_job(owner, valid_submission())
    await insert_finished(user, 100)
    few = await buffers()
    await insert_finished(user, 20_000)
    await insert_finished(user, 3_000, statuses=(S.QUEUED,))  # a long queue, too
    many = await buffers()
    assert many <= few + 3, (few, many)


async def test_the_sweeps_read_their_partial_indexes(backend: str, user: User) -> None:
    await insert_finished(user, 300)
    connection = connections.get("default")
    if backend == "postgres":
        await connection.execute_script('ANALYZE "jobs"')
    with capture_sql() as seen:
        await job_store.stalled_job_ids(connection, clock.now(), 10)
        await job_store.overdue_job_ids(connection, clock.now(), 10)
    captured = [
        (statement.text, statement.parameters)
        for statement in seen
        if statement.parameters is not None
    ]
    stalled_sql, overdue_sql = captured[-2], captured[-1]
    for sql, index in ((stalled_sql, "idx_jobs_lease"), (overdue_sql, "idx_jobs_deadline")):
        plan = await explain(*sql)
        # SQLite reads the partial index it is told to; PostgreSQL may find the status index
        # just as selective: either way an index over the unfinished rows, never the table.
        assert "Seq Scan" not in plan and "SCAN jobs" not in plan, plan
        assert index in plan or (backend == "postgres" and "Index" in plan), plan


# --- the lease's fencing token ------------------------------------------------------------------


async def test_a_stale_holder_cannot_finish_the_job_of_the_current_one(
    owner: Actor, worker: Actor, stall_timeout: float
) -> None:
    """Two render nodes share one worker account: node A claims, goes silent, comes back after
    node B claimed the job again. Reports under A's lease are refused; B's land."""
    job = await rendering(owner, worker)
    lease_a = job.lease
    assert lease_a == 1
    await jobs.report_progress(job.id, 40, actor=worker, lease=lease_a)
    clock.advance(stall_timeout + 1)
    assert (await sweeper.sweep_once()).requeued == 1
    again = await jobs.claim_next(worker)  # node B, same account
    assert again is not None and again.id == job.id and again.lease == lease_a + 1
    await assert_stale_reports_refused(job.id, worker, lease_a, again.lease)

    await jobs.report_progress(job.id, 10, actor=worker, lease=again.lease)
    done = await jobs.complete(job.id, actor=worker, lease=again.lease)
    assert done.status is S.COMPLETED


async def test_a_job_taken_back_by_an_admin_gets_a_new_lease_though_the_attempt_is_given_back(
    owner: Actor, worker: Actor, admin: Actor
) -> None:
    job = await rendering(owner, worker)
    await jobs.requeue(job.id, actor=admin)  # the worker on node A keeps rendering, unaware
    again = await jobs.claim_next(worker)  # node B
    assert again is not None and again.attempts == job.attempts and again.lease == job.lease + 1
    await assert_stale_reports_refused(job.id, worker, job.lease, again.lease)


async def assert_stale_reports_refused(job_id: str, worker: Actor, stale: int, now: int) -> None:
    before = await stored(job_id)
    stale_reports = [
        jobs.report_progress(job_id, 95, actor=worker, lease=stale),
        jobs.heartbeat(job_id, actor=worker, lease=stale),
        jobs.append_log(job_id, ["A is back"], actor=worker, lease=stale),
        jobs.complete(job_id, actor=worker, lease=stale),
        jobs.fail(job_id, "A gives up", actor=worker, lease=stale),
        jobs.requeue(job_id, actor=worker, lease=stale),
    ]
    for report in stale_reports:
        with pytest.raises(Conflict) as refused:
            await report
        assert f"(lease {now}, RENDERING)" in refused.value.message
        assert f"lease {stale} was lost" in refused.value.message
    after = await stored(job_id)
    assert (after.status, after.progress, after.sequence, after.heartbeat_at) == (
        before.status,
        before.progress,
        before.sequence,
        before.heartbeat_at,
    )


@pytest.mark.parametrize("lease", [0, -1, True, "1", 1.0])
async def test_a_lease_that_is_no_lease_number_is_bad_input(
    owner: Actor, worker: Actor, lease: object
) -> None:
    job = await rendering(owner, worker)
    with pytest.raises(BadUserInput) as refused:
        await jobs.heartbeat(job.id, actor=worker, lease=lease)
    assert [error.field for error in refused.value.errors] == ["lease"]
