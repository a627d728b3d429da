"""The job lifecycle as data: which status may follow which, and what each move sets.

This is the contract of ARCHITECTURE.md's table. `plan_transition` turns a job's current state
and a wanted status into the exact column changes; the service layer applies them in one
compare-and-set UPDATE. Nothing else decides whether a move is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.errors import BadUserInput, InvalidTransition
from domain.status import JobStage, JobStatus
from domain.validation import MAX_REASON_LENGTH, check_reason


@dataclass(frozen=True)
class Effect:
    """What a transition sets besides the status, applied in the same UPDATE."""

    stamp_queued_at: bool = False
    # A claim is a lease: started_at = now, progress = 0, the worker, heartbeat_at = now, one
    # more attempt and a new lease number.
    start: bool = False
    # Back to the queue: progress = 0; started_at, the worker and its heartbeat cleared.
    unstart: bool = False
    finish: bool = False  # completed_at = now, actual_time when started
    complete_progress: bool = False  # progress = 100
    needs: str | None = None  # the text the move requires: error_message or cancelled_reason
    # Start afresh: the run's traces and attempts cleared; the log keeps a line saying so.
    retry: bool = False


_FAIL = Effect(finish=True, needs="error_message")
_CANCEL = Effect(finish=True, needs="cancelled_reason")
_RETRY = Effect(retry=True)

S = JobStatus
TRANSITIONS: Mapping[JobStatus, Mapping[JobStatus, Effect]] = {
    S.PENDING: {S.VALIDATING: Effect(), S.CANCELLED: _CANCEL},
    S.VALIDATING: {S.QUEUED: Effect(stamp_queued_at=True), S.FAILED: _FAIL, S.CANCELLED: _CANCEL},
    S.QUEUED: {S.RENDERING: Effect(start=True), S.CANCELLED: _CANCEL},
    S.RENDERING: {
        S.QUEUED: Effect(unstart=True),
        S.COMPLETED: Effect(finish=True, complete_progress=True),
        S.FAILED: _FAIL,
        S.CANCELLED: _CANCEL,
    },
    S.COMPLETED: {},
    S.FAILED: {S.PENDING: _RETRY},
    S.CANCELLED: {S.PENDING: _RETRY},
}


# Final: nothing but a retry (starting afresh) can follow.
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    status for status, moves in TRANSITIONS.items() if all(e.retry for e in moves.values())
)


def allowed_transitions(status: JobStatus) -> list[JobStatus]:
    """The statuses a job in `status` may move to, in the order of JobStatus."""
    targets = TRANSITIONS[JobStatus(status)]
    return [candidate for candidate in JobStatus if candidate in targets]


def is_terminal(status: JobStatus) -> bool:
    return status in TERMINAL_STATUSES


@dataclass(frozen=True)
class JobState:
    """The part of a stored job that decides and computes a transition."""

    id: str
    status: JobStatus
    progress: int
    started_at: datetime | None
    attempts: int = 0
    lease: int = 0
    max_attempts: int = 3
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    stage: JobStage | None = None


@dataclass(frozen=True)
class Plan:
    """A move's column changes (status included) and the lines it adds to the job's log."""

    changes: dict[str, Any]
    log: tuple[str, ...] = ()


def plan_transition(
    job: JobState,
    target: JobStatus,
    *,
    now: datetime,
    reason: object = None,
    worker_id: str | None = None,
) -> Plan:
    """The column changes that move `job` to `target`, status included.

    `reason` is the error message (to FAILED) or the cancellation reason (to CANCELLED).
    Raises InvalidTransition for a pair the table does not allow (the same status included),
    BadUserInput when the required reason is missing or malformed.
    """
    target = JobStatus(target)
    effect = TRANSITIONS[job.status].get(target)
    if effect is None:
        raise InvalidTransition(job.id, job.status, target, allowed_transitions(job.status))

    changes: dict[str, Any] = {"status": target}
    log: tuple[str, ...] = ()
    if effect.needs:
        changes[effect.needs] = check_reason(reason, effect.needs)
    if effect.stamp_queued_at:
        changes["queued_at"] = now
    if effect.start or job.status is JobStatus.RENDERING:
        changes["stage"] = None  # a stage says what a RENDERING job is doing, under one claim
    if effect.start:
        changes.update(
            started_at=now,
            progress=0,
            worker_id=worker_id,
            heartbeat_at=now,
            attempts=job.attempts + 1,
            lease=job.lease + 1,
            not_before=None,
        )
    if effect.unstart:
        changes.update(started_at=None, progress=0, worker_id=None, heartbeat_at=None)
    if effect.finish:
        changes["completed_at"] = now
        changes["actual_time"] = elapsed_seconds(job.started_at, now)
    if effect.complete_progress:
        changes["progress"] = 100
    if effect.retry:
        changes.update(
            progress=0,
            error_message=None,
            cancelled_reason=None,
            started_at=None,
            completed_at=None,
            actual_time=None,
            worker_id=None,
            heartbeat_at=None,
            attempts=0,
            not_before=None,
        )
        log = (f"retried after {job.status.value}",)
    return Plan(changes, log)


# 100 means COMPLETED. Nexrender reports 100 when aerender finishes and then still runs its
# postrender actions (encoding, upload), which may fail: until the job completes it stays at 99.
MAX_RENDERING_PROGRESS = 99


def require_rendering(job_id: str, status: JobStatus, what: str) -> None:
    """What only a RENDERING job takes (progress, a stage, a heartbeat, its worker's log):
    INVALID_TRANSITION naming `what` otherwise."""
    status = JobStatus(status)
    if status is not JobStatus.RENDERING:
        raise InvalidTransition(
            job_id,
            status,
            JobStatus.RENDERING,
            allowed_transitions(status),
            message=f"Job {job_id} is {status.value}: {what} only while it is RENDERING.",
        )


def plan_progress(job: JobState, progress: int) -> int | None:
    """The progress to store, or None when the report changes nothing: progress never goes
    backwards (reports may arrive out of order), and a report of 100 is held at 99 until the job
    completes. Only a RENDERING job makes progress."""
    require_rendering(job.id, job.status, "progress is reported")
    stored = min(progress, MAX_RENDERING_PROGRESS)
    return stored if stored > job.progress else None


def check_stage(value: object, field: str = "stage") -> JobStage:
    try:
        return JobStage(value)
    except ValueError:
        stages = ", ".join(JobStage)
        raise BadUserInput.single(field, f"must be one of {stages}") from None


def plan_stage(job: JobState, stage: JobStage) -> JobStage | None:
    """The stage to store, or None when the report changes nothing. Only a RENDERING job has a
    stage; it may move back (a worker runs a job's stages in its own order)."""
    require_rendering(job.id, job.status, "a stage is reported")
    stage = JobStage(stage)
    return stage if stage != job.stage else None


def elapsed_seconds(started_at: datetime | None, finished_at: datetime) -> int | None:
    if started_at is None:
        return None
    return max(0, int((finished_at - started_at).total_seconds()))


def error_message_for(problems: list[str]) -> str:
    """The error_message of a job that failed validation: every problem, one per line,
    cut to the column's rule."""
    text = "Validation failed:\n" + "\n".join(f"- {problem}" for problem in problems)
    if len(text) <= MAX_REASON_LENGTH:
        return text
    return text[: MAX_REASON_LENGTH - 1] + "…"


__all__ = [
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Effect",
    "JobState",
    "Plan",
    "allowed_transitions",
    "check_stage",
    "elapsed_seconds",
    "error_message_for",
    "is_terminal",
    "plan_progress",
    "plan_stage",
    "plan_transition",
]
