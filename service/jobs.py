"""The job use cases. Each is one transaction, each returns the job as stored, and each change
is one compare-and-set UPDATE with its event. Nothing else writes a job's status.

`actor` is who asks (None: the system itself, e.g. the sweeper or a test); the rules of
domain/policy.py decide what an actor may do, and a job an actor may not see is NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from tortoise import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from domain import lifecycle, policy
from domain.errors import Forbidden, InvalidTransition, NotFound
from domain.events import JobEvent, JobEventKind
from domain.policy import Actor
from domain.status import JobStatus
from domain.validation import (
    CleanSubmission,
    JobSubmission,
    check_log_line,
    check_priority,
    check_progress,
    check_submission,
    render_spec_problems,
)
from models import Job
from models.base import utc_now
from service import job_store, settings
from service.events import publisher
from service.job_store import LostRace

# A change retries when a concurrent one (e.g. a progress report) moved the row on under it.
MAX_ATTEMPTS = 50

Steps = Callable[[BaseDBAsyncClient, Job, datetime], Awaitable[list[JobEvent]]]
Check = Callable[[Job], None]


async def submit_job(actor: Actor, submission: JobSubmission) -> Job:
    """Creates the job PENDING, validates it, and leaves it QUEUED or FAILED (with every
    problem in error_message). Malformed input is refused with BAD_USER_INPUT, writing nothing."""
    if not policy.can_submit_jobs(actor):
        raise Forbidden("Only users and admins submit jobs; workers claim them.")
    clean = check_submission(submission, now=utc_now())
    async with in_transaction() as connection:
        now = utc_now()
        job = await Job.create(
            using_db=connection,
            user_id=actor.id,
            project_name=clean.project_name,
            output_name=clean.output_name,
            template_path=clean.template_path,
            data_path=clean.data_path,
            output_path=clean.output_path,
            priority=clean.priority,
            nexrender_config=clean.nexrender_config,
            auto_cancel_at=clean.auto_cancel_at,
            status=JobStatus.PENDING,
            sequence=1,
            queued_at=now,
        )
        events = [job_store.event_of(job, JobEventKind.CREATED, None)]
        events += await _validate(connection, job, now)
        await publisher().stage(connection, events)
    await publisher().committed(events)
    return job


async def transition(
    job_id: str, target: JobStatus, *, reason: str | None = None, worker_id: str | None = None
) -> Job:
    """Any allowed move, for the system itself (no actor): the table alone decides."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await _move(connection, job, target, now, reason=reason, worker_id=worker_id)]

    return await _run(job_id, None, steps)


async def cancel(job_id: str, reason: object, actor: Actor | None = None) -> Job:
    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await _move(connection, job, JobStatus.CANCELLED, now, reason=reason)]

    return await _run(job_id, _manager_check(actor), steps)


async def retry(job_id: str, actor: Actor | None = None) -> Job:
    """A FAILED or CANCELLED job starts again: PENDING, validated anew, then QUEUED or FAILED."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        events = [await _move(connection, job, JobStatus.PENDING, now)]
        return events + await _validate(connection, job, now)

    return await _run(job_id, _manager_check(actor), steps)


async def set_priority(job_id: str, priority: object, actor: Actor | None = None) -> Job:
    value = check_priority(priority)

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        if lifecycle.is_terminal(JobStatus(job.status)):
            raise InvalidTransition(
                job.id,
                job.status,
                job.status,
                lifecycle.allowed_transitions(JobStatus(job.status)),
                message=f"Job {job.id} is {job.status.value}: its priority no longer matters.",
            )
        if job.priority == value:
            return []
        return [await job_store.compare_and_set(connection, job, {"priority": value}, now)]

    return await _run(job_id, _manager_check(actor), steps)


async def claim_next(worker: Actor) -> Job | None:
    """Hands the next queued job to `worker` (RENDERING, worker recorded), or None when the
    queue is empty. Never hands one job to two workers."""
    if not policy.can_claim_jobs(worker):
        raise Forbidden("Only workers claim jobs.")
    for _ in range(MAX_ATTEMPTS):
        try:
            async with in_transaction() as connection:
                job = await job_store.next_queued(connection)
                if job is None:
                    return None
                now = utc_now()
                event = await _move(connection, job, JobStatus.RENDERING, now, worker_id=worker.id)
                await publisher().stage(connection, [event])
        except LostRace:
            continue
        await publisher().committed([event])
        return job
    return None


async def report_progress(
    job_id: str, progress: object, log_line: object = None, actor: Actor | None = None
) -> Job:
    """Progress only moves forward while RENDERING: a lower value than the stored one is
    ignored (reports can arrive out of order); a log line is appended either way."""
    value = check_progress(progress)
    line = None if log_line is None else check_log_line(log_line)

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        changes: dict[str, object] = {}
        new_progress = lifecycle.plan_progress(job_store.state_of(job), value)
        if new_progress is not None:
            changes["progress"] = new_progress
        if line is not None:
            changes["logs"] = lifecycle.append_log(job.logs, line, now=now)
        if not changes:
            return []
        return [await job_store.compare_and_set(connection, job, changes, now)]

    return await _run(job_id, _worker_check(actor), steps)


async def complete(job_id: str, actor: Actor | None = None) -> Job:
    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await _move(connection, job, JobStatus.COMPLETED, now)]

    return await _run(job_id, _worker_check(actor), steps)


async def fail(job_id: str, error: object, actor: Actor | None = None) -> Job:
    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await _move(connection, job, JobStatus.FAILED, now, reason=error)]

    return await _run(job_id, _worker_check(actor), steps)


async def requeue(job_id: str, actor: Actor | None = None) -> Job:
    """A RENDERING job goes back to the queue, keeping its place (a worker shutting down)."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await _move(connection, job, JobStatus.QUEUED, now)]

    return await _run(job_id, _worker_check(actor), steps)


# --- the machinery ---------------------------------------------------------------------------


async def _run(job_id: str, check: Check | None, steps: Steps) -> Job:
    """Reads the job, checks the actor, runs the steps in one transaction and publishes their
    events once it committed. A lost race starts over from a fresh read, where the rules see
    the status the winner left."""
    for _ in range(MAX_ATTEMPTS):
        try:
            async with in_transaction() as connection:
                job = await job_store.load(connection, job_id)
                if check is not None:
                    check(job)
                events = await steps(connection, job, utc_now())
                if events:
                    await publisher().stage(connection, events)
        except LostRace:
            continue
        if events:
            await publisher().committed(events)
        return job
    raise InvalidTransition(
        job_id,
        "changing",
        "a new status",
        [],
        message=f"Job {job_id} is changing too often to apply this now; try again.",
    )


async def _move(
    connection: BaseDBAsyncClient,
    job: Job,
    target: JobStatus,
    now: datetime,
    *,
    reason: object = None,
    worker_id: str | None = None,
) -> JobEvent:
    changes = lifecycle.plan_transition(
        job_store.state_of(job), target, now=now, reason=reason, worker_id=worker_id
    )
    return await job_store.compare_and_set(connection, job, changes, now)


async def _validate(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
    """PENDING -> VALIDATING -> QUEUED, or FAILED with every problem in error_message."""
    events = [await _move(connection, job, JobStatus.VALIDATING, now)]
    problems = render_spec_problems(
        _submission_of(job), allowed_roots=settings.current().allowed_roots
    )
    if problems:
        message = lifecycle.error_message_for([str(problem) for problem in problems])
        events.append(await _move(connection, job, JobStatus.FAILED, now, reason=message))
    else:
        events.append(await _move(connection, job, JobStatus.QUEUED, now))
    return events


def _submission_of(job: Job) -> CleanSubmission:
    return CleanSubmission(
        project_name=job.project_name,
        output_name=job.output_name,
        template_path=job.template_path,
        data_path=job.data_path,
        output_path=job.output_path,
        priority=job.priority,
        nexrender_config=job.nexrender_config,
        auto_cancel_at=job.auto_cancel_at,
    )


def _manager_check(actor: Actor | None) -> Check | None:
    """Cancel, retry, priority: the owner or an admin."""
    if actor is None:
        return None

    def check(job: Job) -> None:
        if policy.can_manage_job(actor, job.user_id):
            return
        _refuse(actor, job, "Only the job's owner or an admin may change it.")

    return check


def _worker_check(actor: Actor | None) -> Check | None:
    """Progress, complete, fail, requeue: the worker holding the job, or an admin."""
    if actor is None:
        return None

    def check(job: Job) -> None:
        if policy.can_work_on_job(actor, job.worker_id):
            return
        _refuse(actor, job, "Only the worker holding the job (or an admin) may report on it.")

    return check


def _refuse(actor: Actor, job: Job, why: str) -> None:
    if policy.can_see_job(actor, job.user_id, job.worker_id):
        raise Forbidden(why)
    raise NotFound("Job", job.id)
