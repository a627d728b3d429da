"""A claim is a lease: the rules of attempts, silence, hand-backs, retryable failures and
deadlines. Each plan is an ordinary move of the transition table plus the lease's bookkeeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.errors import BadUserInput, Conflict
from domain.events import Duty, JobEvent
from domain.lifecycle import TERMINAL_STATUSES, JobState, Plan, plan_transition
from domain.status import JobStatus
from domain.validation import MAX_REASON_LENGTH, check_reason

# Render farms count a node stalled after about ten minutes, and a Nexrender worker reports only
# when its percentage changes: a long frame is silence, not death.
DEFAULT_STALL_TIMEOUT_SECONDS = 600
DEFAULT_RETRY_BACKOFF_SECONDS = 10


def check_lease(job: JobState, lease: object) -> None:
    """A report may name the lease its claim answered (`Job.lease`, bumped by every claim and
    never given back): the fencing token. It is refused once the job has been claimed again, so
    that a stale holder (a node that went silent and came back, one whose job an admin took
    back, or two nodes sharing one account) cannot finish the job of the worker that holds it
    now. None: the report names no lease."""
    if lease is None:
        return
    if isinstance(lease, bool) or not isinstance(lease, int) or lease < 1:
        raise BadUserInput.single(
            "lease", "must be a positive integer: the lease number your claim answered"
        )
    if lease != job.lease:
        raise Conflict(
            f"Job {job.id} was claimed again (lease {job.lease}, {job.status.value}); lease "
            f"{lease} was lost: stop working on it."
        )


def is_stalled(job: JobState, now: datetime, timeout_seconds: float) -> bool:
    """A RENDERING job whose holder has said nothing for `timeout_seconds`."""
    return (
        job.status is JobStatus.RENDERING
        and job.heartbeat_at is not None
        and (now - job.heartbeat_at).total_seconds() >= timeout_seconds
    )


def is_claimable(
    not_before: datetime | None, auto_cancel_at: datetime | None, now: datetime
) -> bool:
    """Whether a QUEUED job may be handed out now: out of its retry backoff and not past its
    deadline. (The claim's SQL in service/job_store.py says the same.)"""
    return (not_before is None or not_before <= now) and (
        auto_cancel_at is None or auto_cancel_at > now
    )


def is_overdue(status: JobStatus, auto_cancel_at: datetime | None, now: datetime) -> bool:
    """A job that has not finished by its deadline."""
    return auto_cancel_at is not None and auto_cancel_at <= now and status not in TERMINAL_STATUSES


def may_reclaim(job: JobState, last_change: JobEvent | None, worker_id: str) -> bool:
    """Whether `worker_id` may take back a job the sweeper requeued because that worker went
    silent, `last_change` being the job's latest change: only while nothing else has happened to
    the job since (nobody claimed it, nobody cancelled it). A Nexrender worker reports only when
    its percentage changes, so a long frame can look like a dead worker; the render it is still
    running is not thrown away."""
    return (
        job.status is JobStatus.QUEUED
        and last_change is not None
        and last_change.duty is Duty.STALL_RECOVERY
        and last_change.previous_status is JobStatus.RENDERING
        and last_change.status is JobStatus.QUEUED
        and last_change.worker_id == worker_id
    )


def retry_delay(attempt: int, backoff_seconds: float) -> timedelta:
    """How long a job waits after its `attempt`-th try failed: the backoff, doubled per attempt,
    so that a job that kills workers does not take the front of the queue over and over."""
    return timedelta(seconds=backoff_seconds * 2 ** max(0, attempt - 1))


def plan_hand_back(job: JobState, now: datetime) -> Plan:
    """The holder gives the job back (shutting down): it keeps its place in the queue, and the
    attempt is given back too, since a clean hand-back is not a failure."""
    plan = plan_transition(job, JobStatus.QUEUED, now=now)
    changes = {**plan.changes, "attempts": max(0, job.attempts - 1)}
    return Plan(changes, ("handed back to the queue; the attempt does not count",))


def plan_failure(
    job: JobState, error: object, now: datetime, *, retryable: bool, backoff_seconds: float
) -> Plan:
    """A failed attempt. Retryable with attempts left: back to the queue, claimable only after
    the backoff; otherwise FAILED."""
    text = check_reason(error, "error_message")
    if not retryable:
        return plan_transition(job, JobStatus.FAILED, now=now, reason=text)
    attempt = f"attempt {job.attempts} of {job.max_attempts}"
    if job.attempts >= job.max_attempts:
        message = _bounded(text, f" ({attempt}; no attempts left)")
        return plan_transition(job, JobStatus.FAILED, now=now, reason=message)
    delay = retry_delay(job.attempts, backoff_seconds)
    plan = plan_transition(job, JobStatus.QUEUED, now=now)
    changes = {**plan.changes, "not_before": now + delay}
    line = f"{attempt} failed: {text}; queued again, claimable in {_seconds(delay)} s"
    return Plan(changes, (line,))


def plan_stall(job: JobState, now: datetime, *, timeout_seconds: float, worker: str) -> Plan:
    """The holder went silent: back to the queue (keeping its place) while attempts are left,
    FAILED after the last one. `worker` names the holder for people."""
    silence = _seconds(now - job.heartbeat_at) if job.heartbeat_at else 0
    what = (
        f"worker {worker} went silent for {silence} s "
        f"(stall timeout {_seconds(timedelta(seconds=timeout_seconds))} s)"
    )
    attempt = f"attempt {job.attempts} of {job.max_attempts}"
    if job.attempts >= job.max_attempts:
        message = f"Rendering stalled: {what} on {attempt}; no attempts left."
        failed = plan_transition(job, JobStatus.FAILED, now=now, reason=message)
        return Plan(failed.changes, (message,))
    plan = plan_transition(job, JobStatus.QUEUED, now=now)
    return Plan(plan.changes, (f"{what} on {attempt}; queued again",))


def plan_deadline(job: JobState, auto_cancel_at: datetime, now: datetime) -> Plan:
    reason = (
        f"auto-cancelled: its deadline {auto_cancel_at.isoformat()} passed "
        f"while it was {job.status.value}"
    )
    cancelled = plan_transition(job, JobStatus.CANCELLED, now=now, reason=reason)
    return Plan(cancelled.changes, (reason,))


def _seconds(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds()))


def _bounded(text: str, suffix: str) -> str:
    room = MAX_REASON_LENGTH - len(suffix)
    return (text if len(text) <= room else text[: room - 1] + "…") + suffix
