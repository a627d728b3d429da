"""The whole 7x7 matrix of ARCHITECTURE.md, applied to stored jobs through the use cases: each
allowed pair succeeds with exactly its effects, each other pair (the same status included) is
refused with INVALID_TRANSITION and leaves the row unchanged byte for byte."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import BadUserInput, InvalidTransition
from domain.events import JobEventKind
from domain.lifecycle import allowed_transitions
from domain.policy import Actor
from domain.status import JobStatus
from models import Job
from service import jobs
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
    fields: dict[str, Any] = {"status": status, "queued_at": QUEUED_AT, "logs": "submitted"}
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
    return await insert_job(await owner_user(owner), **fields)


async def owner_user(owner: Actor) -> Any:
    from models import User

    return await User.get(id=owner.id)


async def row(job_id: str) -> dict[str, Any]:
    return (await Job.filter(id=job_id).values())[0]


def expected_changes(source: JobStatus, target: JobStatus, before: dict[str, Any]) -> set[str]:
    """Which columns the move writes, besides status, sequence and updated_at."""
    if target is S.VALIDATING:
        return set()
    if target is S.QUEUED:
        return {"queued_at"} if source is S.VALIDATING else {"progress", "started_at", "worker_id"}
    if target is S.RENDERING:
        written = {"started_at", "worker_id", "progress"}
        return written - ({"progress"} if before["progress"] == 0 else set())
    if target is S.COMPLETED:
        return {"progress", "completed_at", "actual_time"}
    if target is S.FAILED:
        written = {"error_message", "completed_at"}
        return written | ({"actual_time"} if before["started_at"] else set())
    if target is S.CANCELLED:
        written = {"cancelled_reason", "completed_at"}
        return written | ({"actual_time"} if before["started_at"] else set())
    # retry: every trace of the run goes, the logs gain a line
    cleared = {"progress", "error_message", "cancelled_reason", "started_at", "completed_at"}
    cleared |= {"actual_time", "worker_id", "logs"}
    return {name for name in cleared if before[name] not in (None, 0)} | {"logs"}


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
    start = datetime.now(UTC)

    if (source, target) not in ALLOWED:
        with pytest.raises(InvalidTransition) as refused:
            await jobs.transition(job.id, target, reason="because")
        assert refused.value.found == source and refused.value.wanted == target
        assert refused.value.code == "INVALID_TRANSITION"
        assert await row(job.id) == before
        assert recorder.events == []
        return

    returned = await jobs.transition(job.id, target, reason="because", worker_id=worker.id)
    after = await row(job.id)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"status", "sequence", "updated_at"} | expected_changes(
        source, target, before
    )
    assert after["status"] == target
    assert after["sequence"] == before["sequence"] + 1
    assert {k: getattr(returned, k) for k in after} == after  # returned as stored

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
        assert (
            after["logs"].startswith("submitted\n[") and f"retried after {source}" in after["logs"]
        )
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
        await jobs.transition(job.id, target, reason=reason)  # type: ignore[arg-type]
    assert [error.field for error in refused.value.errors] == [field]
    assert await row(job.id) == before
