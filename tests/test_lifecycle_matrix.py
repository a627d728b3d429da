"""The whole 7x7 matrix of ARCHITECTURE.md, applied to stored jobs through the use cases: each
allowed pair succeeds with exactly its effects, each other pair (the same status included) is
refused with INVALID_TRANSITION and leaves the row unchanged byte for byte."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tortoise import BaseDBAsyncClient

from domain.errors import BadUserInput, InvalidTransition
from domain.events import JobEvent, JobEventKind
from domain.lifecycle import allowed_transitions
from domain.policy import Actor
from domain.status import JobStatus
from models import Job, User
from service import job_store, jobs
from service.events import RecordingPublisher
from tests.factories import insert_job

S = JobStatus
ALLOWED = {
    (S.PENDING, S.VALIDATING), (S.PENDING, S.CANCELLED),
    (S.VALIDATING, S.QUEUED), (S.VALIDATING, S.FAILED), (S.VALIDATING, S.CANCELLED),
    (S.QUEUED, S.RENDERING), (S.QUEUED, S.CANCELLED),
    (S.RENDERING, S.QUEUED), (S.RENDERING, S.COMPLETED), (S.RENDERING, S.FAILED),
    (S.RENDERING, S.CANCELLED),
    (S.FAILED, S.PENDING), (S.CANCELLED, S.PENDING),
}  # fmt: skip
PAIRS = list(itertools.product(JobStatus, JobStatus))
STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
QUEUED_AT = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)


async def job_in(status: JobStatus, owner: Actor, worker: Actor) -> Job:
    """A stored job as it would look in `status`."""
    fields: dict[str, Any] = {"status": status, "queued_at": QUEUED_AT}
    if status is S.RENDERING:
        fields |= {"started_at": STARTED, "progress": 40, "worker_id": worker.id}
    if status is S.FAILED:
        fields |= {"started_at": STARTED, "progress": 40, "error_message": "aerender exit 1"}
        fields |= {"completed_at": STARTED + timedelta(seconds=90), "actual_time": 90}
    if status is S.CANCELLED:
        fields |= {"cancelled_reason": "not needed", "completed_at": STARTED}
    if status is S.COMPLETED:
        fields |= {"started_at": STARTED, "progress": 100, "actual_time": 60}
        fields |= {"completed_at": STARTED + timedelta(seconds=60), "worker_id": worker.id}
    job = await insert_job(await User.get(id=owner.id), **fields)
    return await jobs.append_log(job.id, ["submitted"])


async def transition(
    job_id: str, target: JobStatus, *, reason: object = None, worker_id: str | None = None
) -> Job:
    """Any move of the table, through the use cases' own machinery (no actor: the table alone
    decides)."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await jobs._move(connection, job, target, now, reason=reason, worker_id=worker_id)]

    return await jobs._run(job_id, None, steps, None)


async def row(job_id: str) -> dict[str, Any]:
    """The stored job, with its log as read."""
    stored = (await Job.filter(id=job_id).values())[0]
    return {**stored, "logs": await jobs.log_text(await Job.get(id=job_id))}


def expected_changes(source: JobStatus, target: JobStatus, before: dict[str, Any]) -> set[str]:
    """Which columns the move writes, besides status, sequence and updated_at."""
    if target is S.VALIDATING:
        return set()
    if target is S.QUEUED:
        return {"queued_at"} if source is S.VALIDATING else {"progress", "started_at", "worker_id"}
    if target is S.RENDERING:  # the lease too: heartbeat and one more attempt
        written = {"started_at", "worker_id", "progress", "heartbeat_at", "attempts", "lease"}
        return written - ({"progress"} if before["progress"] == 0 else set())
    if target is S.COMPLETED:
        return {"progress", "completed_at", "actual_time"}
    if target is S.FAILED:
        written = {"error_message", "completed_at"}
        return written | ({"actual_time"} if before["started_at"] else set())
    if target is S.CANCELLED:
        written = {"cancelled_reason", "completed_at"}
        return written | ({"actual_time"} if before["started_at"] else set())
    # retry: every trace of the run goes (its attempts too), the logs gain a line
    cleared = {"progress", "error_message", "cancelled_reason", "started_at", "completed_at"}
    cleared |= {"actual_time", "worker_id", "heartbeat_at", "attempts", "not_before"}
    return {name for name in cleared if before[name] not in (None, 0)} | {"logs", "log_bytes"}


def test_the_table_in_the_domain_is_the_table_of_the_architecture() -> None:
    domain_pairs = {(s, t) for s in JobStatus for t in allowed_transitions(s)}
    assert domain_pairs == ALLOWED


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
async def test_every_pair_of_the_matrix(
    source: JobStatus,
    target: JobStatus,
    owner: Actor,
    worker: Actor,
    recorder: RecordingPublisher,
) -> None:
    job = await job_in(source, owner, worker)
    before = await row(job.id)
    recorder.clear()
    start = datetime.now(UTC)

    if (source, target) not in ALLOWED:
        with pytest.raises(InvalidTransition) as refused:
            await transition(job.id, target, reason="because")
        assert refused.value.found == source and refused.value.wanted == target
        assert refused.value.code == "INVALID_TRANSITION"
        assert await row(job.id) == before
        assert recorder.events == []
        return

    returned = await transition(job.id, target, reason="because", worker_id=worker.id)
    after = await row(job.id)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"status", "sequence", "updated_at"} | expected_changes(
        source, target, before
    )
    assert after["status"] == target
    assert after["sequence"] == before["sequence"] + 1
    # Returned as stored (the use cases read and return a job without its render spec).
    stored = {name: value for name, value in after.items() if name in job_store.ROW_FIELDS}
    assert {k: getattr(returned, k) for k in stored} == stored

    if "started_at" in changed and after["started_at"]:
        assert after["started_at"] >= start
    if target in (S.FAILED, S.CANCELLED, S.COMPLETED):
        assert after["completed_at"] >= start
        started = after["started_at"]
        expected_actual = (
            int((after["completed_at"] - started).total_seconds()) if started else None
        )
        assert after["actual_time"] == expected_actual
    if target is S.COMPLETED:
        assert after["progress"] == 100
    if target is S.FAILED:
        assert after["error_message"] == "because"
    if target is S.CANCELLED:
        assert after["cancelled_reason"] == "because"
    if target is S.QUEUED and source is S.RENDERING:
        assert after["queued_at"] == QUEUED_AT  # a requeued job keeps its place
    if target is S.PENDING:
        lines = after["logs"].splitlines()
        assert lines[0].endswith("] submitted")  # the log is kept
        assert lines[1].startswith("[") and lines[1].endswith(f"] retried after {source}")
        assert after["progress"] == 0 and after["completed_at"] is None

    assert [(e.kind, e.status, e.previous_status, e.sequence) for e in recorder.events] == [
        (JobEventKind.STATUS_CHANGED, target, source, before["sequence"] + 1)
    ]


@pytest.mark.parametrize("target", [S.FAILED, S.CANCELLED])
@pytest.mark.parametrize("reason", [None, "", "   ", "x" * 4097, "nul\x00byte", 42])
async def test_a_move_that_needs_a_reason_is_refused_without_one(
    target: JobStatus, reason: object, owner: Actor, worker: Actor
) -> None:
    job = await job_in(S.RENDERING, owner, worker)
    before = await row(job.id)
    field = "error_message" if target is S.FAILED else "cancelled_reason"
    with pytest.raises(BadUserInput) as refused:
        await transition(job.id, target, reason=reason)  # type: ignore[arg-type]
    assert [error.field for error in refused.value.errors] == [field]
    assert await row(job.id) == before
