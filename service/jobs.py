"""The job use cases. Each is one transaction, each returns the job as stored, and each change
is one compare-and-set UPDATE with its event. Nothing else writes a job's status.

`actor` is who asks (None: the system itself, e.g. the sweeper or a test); the rules of
domain/policy.py decide what an actor may do, and a job an actor may not see is NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from tortoise import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from domain import estimates, joblog, leases, lifecycle, policy
from domain.errors import BadUserInput, Conflict, FieldError, Forbidden, InvalidTransition, NotFound
from domain.events import Author, Duty, JobEvent, JobEventKind, reason_of
from domain.lifecycle import Plan
from domain.lookups import is_well_formed_id
from domain.policy import Actor
from domain.status import JobStatus
from domain.tags import format_tags, parse_tags
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
from models.base import new_id
from service import clock, event_store, job_logs, job_store, metrics, settings
from service.events import publisher
from service.job_store import LostRace

# A change retries when a concurrent one (e.g. a progress report) moved the row on under it.
MAX_RACES = 50
# Lines one appendJobLog call may carry.
MAX_LOG_LINES_PER_CALL = 1000

Steps = Callable[[BaseDBAsyncClient, Job, datetime], Awaitable[list[JobEvent]]]
Check = Callable[[Job], None]


def new_job_id() -> str:
    """An id for a job about to be submitted (submit_job's `job_id`)."""
    return new_id()


async def submit_job(
    actor: Actor,
    submission: JobSubmission,
    *,
    tags: object = (),
    job_id: str | None = None,
    refuse_invalid: bool = False,
) -> Job:
    """Creates the job PENDING, validates it, and leaves it QUEUED or FAILED (with every
    problem in error_message). Malformed input is refused with BAD_USER_INPUT, writing nothing;
    with `refuse_invalid`, so is a job that would fail its render rules (a client with no way to
    read a FAILED job's error_message, such as a Nexrender one). `job_id`: the id it gets (from
    new_job_id), `tags`: Nexrender's tags."""
    if not policy.can_submit_jobs(actor):
        raise Forbidden("Only users and admins submit jobs; workers claim them.")
    if job_id is not None and not is_well_formed_id(job_id):
        raise BadUserInput.single("uid", "is not an id (lower-case letters and digits)")
    stored_tags = format_tags(parse_tags(tags))
    clean = check_submission(submission, now=clock.now())
    if refuse_invalid and (problems := _render_problems(clean)):
        raise BadUserInput(problems)
    async with in_transaction() as connection:
        now = clock.now()
        job = await Job.create(
            using_db=connection,
            id=job_id or new_id(),
            user_id=actor.id,
            project_name=clean.project_name,
            output_name=clean.output_name,
            template_path=clean.template_path,
            data_path=clean.data_path,
            output_path=clean.output_path,
            priority=clean.priority,
            nexrender_config=clean.nexrender_config,
            auto_cancel_at=clean.auto_cancel_at,
            max_attempts=clean.max_attempts,
            tags=stored_tags,
            status=JobStatus.PENDING,
            sequence=1,
            queued_at=now,
        )
        # The row's own timestamps are the database layer's clock; the history goes by the
        # use cases' clock, like every later change, so its times never run backwards.
        job.updated_at = now
        events = [job_store.event_of(job, JobEventKind.CREATED, None)]
        events += await _validate(connection, job, now)
        events = await _record(connection, events, Author.of(actor.id))
    await publisher().committed(events)
    return job


async def cancel(job_id: str, reason: object, actor: Actor | None = None) -> Job:
    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await _move(connection, job, JobStatus.CANCELLED, now, reason=reason)]

    return await _run(job_id, _manager_check(actor), steps, actor)


async def retry(job_id: str, actor: Actor | None = None) -> Job:
    """A FAILED or CANCELLED job starts again: PENDING, validated anew, then QUEUED or FAILED."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        events = [await _move(connection, job, JobStatus.PENDING, now)]
        return events + await _validate(connection, job, now)

    return await _run(job_id, _manager_check(actor), steps, actor)


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

    return await _run(job_id, _manager_check(actor), steps, actor)


@metrics.claim
async def claim_next(
    worker: Actor,
    *,
    tags: object = (),
    only_renderable: bool = False,
    read_render_spec: bool = False,
) -> Job | None:
    """Hands the next queued job to `worker` (RENDERING, worker recorded), or None when the
    queue is empty. Never hands one job to two workers. With `tags`, only a job carrying every
    one of them; with `only_renderable`, only a job with a nexrender_config (what a Nexrender
    worker can render); with `read_render_spec`, its nexrender_config is read with it."""
    if not policy.can_claim_jobs(worker):
        raise Forbidden("Only workers claim jobs.")
    wanted = parse_tags(tags)
    for _ in range(MAX_RACES):
        try:
            async with in_transaction() as connection:
                now = clock.now()
                job = await job_store.next_claimable(
                    connection,
                    now,
                    tags=wanted,
                    only_renderable=only_renderable,
                    read_render_spec=read_render_spec,
                )
                if job is None:
                    return None
                event = await _move(connection, job, JobStatus.RENDERING, now, worker_id=worker.id)
                events = await _record(connection, [event], Author.of(worker.id))
        except LostRace:
            continue
        await publisher().committed(events)
        return job
    return None


@metrics.claim
async def claim(job_id: str, worker: Actor) -> Job:
    """`worker` takes this QUEUED job (a Nexrender worker 1.8 picks a job from the list itself),
    if a claim could hand it out now: out of its retry backoff, before its deadline. Of two
    workers taking one job, one wins; the other finds it gone (NOT_FOUND)."""
    if not policy.can_claim_jobs(worker):
        raise Forbidden("Only workers claim jobs.")

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        _require_claimable(job, now)
        return [await _move(connection, job, JobStatus.RENDERING, now, worker_id=worker.id)]

    return await _run(job_id, _visible_check(worker), steps, worker)


@metrics.claim
async def reclaim(job_id: str, worker: Actor) -> Job:
    """`worker` takes back the job the sweeper requeued because it went silent, as a new claim,
    if nothing has happened to the job since (leases.may_reclaim) and a claim could hand it out
    now. CONFLICT otherwise: the job is no longer this worker's."""
    if not policy.can_claim_jobs(worker):
        raise Forbidden("Only workers claim jobs.")
    row = await job_store.read_row(job_id) if is_well_formed_id(job_id) else None
    # The latest change, read before the transaction (the history is read on its own
    # connection); the compare-and-set on the sequence proves it is still the latest.
    latest = await event_store.job_events(job_id, row.sequence - 1, 1) if row else []

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        last = latest[0] if latest and latest[0].sequence == job.sequence else None
        if not leases.may_reclaim(job_store.state_of(job), last, worker.id):
            raise Conflict(
                f"Job {job.id} is {job.status.value} and no longer yours: stop working on it."
            )
        _require_claimable(job, now)
        plan = lifecycle.plan_transition(
            job_store.state_of(job), JobStatus.RENDERING, now=now, worker_id=worker.id
        )
        worker_name = await job_store.worker_name(connection, worker.id)
        line = f"worker {worker_name} reported again after going silent and took the job back"
        return [await _apply(connection, job, Plan(plan.changes, (line,)), now)]

    return await _run(job_id, _visible_check(worker), steps, worker)


async def report_progress(
    job_id: str,
    progress: object,
    log_line: object = None,
    actor: Actor | None = None,
    *,
    lease: object = None,
    stage: object = None,
) -> Job:
    """Progress only moves forward while RENDERING: a lower value than the stored one is
    ignored (reports can arrive out of order); a log line is appended either way. `stage` says
    what the job is doing now. Every report renews the holder's lease."""
    value = check_progress(progress)
    return await report(job_id, actor, progress=value, stage=stage, log_line=log_line, lease=lease)


@metrics.progress_report
async def report(
    job_id: str,
    actor: Actor | None = None,
    *,
    progress: object = None,
    stage: object = None,
    log_line: object = None,
    lease: object = None,
) -> Job:
    """A RENDERING job's worker reports any of its progress, its stage and a log line (a
    Nexrender worker's PUT carries what it carries); with none of them it is a heartbeat. The
    rules of report_progress."""
    value = None if progress is None else check_progress(progress)
    wanted_stage = None if stage is None else lifecycle.check_stage(stage)
    lines = [] if log_line is None else _split([check_log_line(log_line)], "log")

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        changes: dict[str, object] = {}
        state = job_store.state_of(job)
        if value is None:
            lifecycle.require_rendering(job.id, job.status, "progress is reported")
        elif (new_progress := lifecycle.plan_progress(state, value)) is not None:
            changes["progress"] = new_progress
        if wanted_stage is not None and lifecycle.plan_stage(state, wanted_stage) is not None:
            changes["stage"] = wanted_stage
        if lines:
            changes.update(await _append_lines(connection, job, lines, now))
        if not changes:
            await _renew(connection, job, now)
            return []
        changes["heartbeat_at"] = now
        return [await job_store.compare_and_set(connection, job, changes, now)]

    return await _run(job_id, _worker_check(actor, lease), steps, actor)


async def heartbeat(job_id: str, actor: Actor | None = None, *, lease: object = None) -> Job:
    """The holder is alive (a long frame with no new percentage): renews its lease. Not a change
    to the job anyone follows: no event."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        lifecycle.require_rendering(job.id, job.status, "heartbeats are sent")
        await _renew(connection, job, now)
        return []

    return await _run(job_id, _worker_check(actor, lease), steps, actor)


async def append_log(
    job_id: str, lines: object, actor: Actor | None = None, *, lease: object = None
) -> Job:
    """Adds lines to the job's log, each stamped with UTC time. The holder appends while the
    job renders (and renews its lease); an admin (or the system) at any time."""
    checked = _check_log_lines(lines)

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        holder = actor is not None and not actor.is_admin
        if holder:
            lifecycle.require_rendering(job.id, job.status, "its worker appends to its log")
        changes = await _append_lines(connection, job, checked, now)
        if holder:
            changes["heartbeat_at"] = now
        return [await job_store.compare_and_set(connection, job, changes, now)]

    return await _run(job_id, _worker_check(actor, lease), steps, actor)


async def complete(job_id: str, actor: Actor | None = None, *, lease: object = None) -> Job:
    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        return [await _move(connection, job, JobStatus.COMPLETED, now)]

    return await _run(job_id, _worker_check(actor, lease), steps, actor)


async def fail(
    job_id: str,
    error: object,
    actor: Actor | None = None,
    *,
    retryable: bool = False,
    lease: object = None,
) -> Job:
    """The attempt failed. A retryable failure with attempts left goes back to the queue and is
    not handed out before its backoff has passed; otherwise the job is FAILED."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        plan = leases.plan_failure(
            job_store.state_of(job),
            error,
            now,
            retryable=retryable,
            backoff_seconds=settings.current().retry_backoff_seconds,
        )
        return [await _apply(connection, job, plan, now)]

    return await _run(job_id, _worker_check(actor, lease), steps, actor)


async def requeue(job_id: str, actor: Actor | None = None, *, lease: object = None) -> Job:
    """The holder hands a RENDERING job back (shutting down), or an admin takes it back: it
    returns to the queue keeping its place, and the attempt does not count."""

    async def steps(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
        plan = leases.plan_hand_back(job_store.state_of(job), now)
        return [await _apply(connection, job, plan, now)]

    return await _run(job_id, _worker_check(actor, lease), steps, actor)


async def cancel_if_overdue(job_id: str, now: datetime) -> Job | None:
    """The sweeper's deadline duty: CANCELLED if the job is unfinished past auto_cancel_at.
    The job if this call cancelled it; None if there was nothing to do (it finished, or another
    sweeper got there first)."""
    acted = False

    async def steps(connection: BaseDBAsyncClient, job: Job, _: datetime) -> list[JobEvent]:
        nonlocal acted
        if job.auto_cancel_at is None or not leases.is_overdue(
            JobStatus(job.status), job.auto_cancel_at, now
        ):
            return []
        plan = leases.plan_deadline(job_store.state_of(job), job.auto_cancel_at, now)
        event = await _apply(connection, job, plan, now)
        acted = True
        return [event]

    job = await _run(job_id, None, steps, Author(duty=Duty.DEADLINE))
    return job if acted else None


async def recover_if_stalled(job_id: str, now: datetime) -> Job | None:
    """The sweeper's lease duty: a RENDERING job whose worker has been silent for the stall
    timeout goes back to the queue, or FAILED after its last attempt. The job if this call
    moved it; None if there was nothing to do."""
    timeout = settings.current().stall_timeout_seconds
    acted = False

    async def steps(connection: BaseDBAsyncClient, job: Job, _: datetime) -> list[JobEvent]:
        nonlocal acted
        state = job_store.state_of(job)
        if not leases.is_stalled(state, now, timeout):
            return []
        worker = await job_store.worker_name(connection, job.worker_id)
        plan = leases.plan_stall(state, now, timeout_seconds=timeout, worker=worker)
        # Guarded on the silence too: a heartbeat renews the lease without bumping the sequence.
        silent_since = now - timedelta(seconds=timeout)
        event = await _apply(connection, job, plan, now, heartbeat_at__lte=silent_since)
        acted = True
        return [event]

    job = await _run(job_id, None, steps, Author(duty=Duty.STALL_RECOVERY))
    return job if acted else None


async def log_text(job: Job, tail: int | None = None) -> str | None:
    """The job's log as one text (its last `tail` lines when given)."""
    return (await job_logs.read_logs([job], tail))[0]


# --- the machinery ---------------------------------------------------------------------------


async def _run(job_id: str, check: Check | None, steps: Steps, by: Actor | Author | None) -> Job:
    """Reads the job, checks the actor, runs the steps in one transaction, records their events
    (made `by` an actor or a duty) and publishes them once it committed. A lost race starts over
    from a fresh read, where the rules see the status the winner left."""
    author = by if isinstance(by, Author) else Author.of(None if by is None else by.id)
    for _ in range(MAX_RACES):
        try:
            async with in_transaction() as connection:
                job = await job_store.load(connection, job_id)
                if check is not None:
                    check(job)
                events = await steps(connection, job, clock.now())
                events = await _record(connection, events, author)
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


async def _record(
    connection: BaseDBAsyncClient, events: list[JobEvent], author: Author
) -> list[JobEvent]:
    """The events into the job's history and onto the bus, in the change's transaction."""
    if not events:
        return []
    recorded = await event_store.record(connection, [event.by(author) for event in events])
    await publisher().stage(connection, recorded)
    return recorded


async def _move(
    connection: BaseDBAsyncClient,
    job: Job,
    target: JobStatus,
    now: datetime,
    *,
    reason: object = None,
    worker_id: str | None = None,
    extra: dict[str, object] | None = None,
) -> JobEvent:
    plan = lifecycle.plan_transition(
        job_store.state_of(job), target, now=now, reason=reason, worker_id=worker_id
    )
    if extra:
        plan = Plan({**plan.changes, **extra}, plan.log)
    return await _apply(connection, job, plan, now)


async def _apply(
    connection: BaseDBAsyncClient, job: Job, plan: Plan, now: datetime, **guards: object
) -> JobEvent:
    """One move: its log lines and its compare-and-set UPDATE, in the caller's transaction."""
    changes = dict(plan.changes)
    if plan.log:
        changes.update(await _append_lines(connection, job, plan.log, now))
    reason = reason_of(plan.changes, plan.log)
    return await job_store.compare_and_set(connection, job, changes, now, reason=reason, **guards)


async def _append_lines(
    connection: BaseDBAsyncClient, job: Job, lines: Sequence[str], now: datetime
) -> dict[str, object]:
    return await job_logs.append(
        connection, job, lines, now, limit_bytes=settings.current().log_limit_bytes
    )


async def _renew(connection: BaseDBAsyncClient, job: Job, now: datetime) -> None:
    if not await job_store.renew_lease(connection, job, now):
        raise LostRace(job.id)


def _check_log_lines(lines: object) -> list[str]:
    """appendJobLog's lines, each line break starting a stamped line of its own."""
    if not isinstance(lines, list | tuple) or not lines:
        raise BadUserInput.single("lines", "must be a non-empty list of log lines")
    if len(lines) > MAX_LOG_LINES_PER_CALL:
        raise BadUserInput.single(
            "lines", f"must hold at most {MAX_LOG_LINES_PER_CALL} lines per call"
        )
    checked = [check_log_line(line, f"lines[{index}]") for index, line in enumerate(lines)]
    return _split(checked, "lines")


def _split(entries: list[str], field: str) -> list[str]:
    split = [part for entry in entries for part in joblog.split_lines(entry)]
    if len(split) > MAX_LOG_LINES_PER_CALL:
        raise BadUserInput.single(
            field,
            f"must hold at most {MAX_LOG_LINES_PER_CALL} lines per call, line breaks included",
        )
    return split


def _render_problems(submission: CleanSubmission) -> list[FieldError]:
    current = settings.current()
    return render_spec_problems(
        submission,
        allowed_roots=current.allowed_roots,
        allowed_uri_schemes=current.allowed_uri_schemes,
        allowed_actions=current.allowed_actions,
    )


async def _validate(connection: BaseDBAsyncClient, job: Job, now: datetime) -> list[JobEvent]:
    """PENDING -> VALIDATING -> QUEUED, or FAILED with every problem in error_message."""
    submission = _submission_of(await job_store.with_render_spec(connection, job))
    events = [await _move(connection, job, JobStatus.VALIDATING, now)]
    problems = _render_problems(submission)
    if problems:
        message = lifecycle.error_message_for([str(problem) for problem in problems])
        events.append(await _move(connection, job, JobStatus.FAILED, now, reason=message))
    else:
        estimate = await _estimated_time(connection, job)
        events.append(
            await _move(connection, job, JobStatus.QUEUED, now, extra={"estimated_time": estimate})
        )
    return events


async def _estimated_time(connection: BaseDBAsyncClient, job: Job) -> int | None:
    """The median render time of recent jobs of the same template, else the same project."""
    for key in ({"template_path": job.template_path}, {"project_name": job.project_name}):
        samples = await job_store.recent_render_times(
            connection,
            template_path=key.get("template_path"),
            project_name=key.get("project_name"),
            limit=estimates.ESTIMATE_SAMPLE_SIZE,
        )
        if samples:
            return estimates.estimated_seconds(samples)
    return None


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
        max_attempts=job.max_attempts,
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


def _worker_check(actor: Actor | None, lease: object = None) -> Check | None:
    """Progress, complete, fail, requeue: the worker holding the job, or an admin; with
    `lease`, only while the job is still under that claim (the lease's fencing token)."""
    if actor is None and lease is None:
        return None

    def check(job: Job) -> None:
        if actor is not None and not policy.can_work_on_job(actor, job.worker_id):
            _refuse(actor, job, "Only the worker holding the job (or an admin) may report on it.")
        leases.check_lease(job_store.state_of(job), lease)

    return check


def _visible_check(actor: Actor) -> Check:
    def check(job: Job) -> None:
        if not policy.can_see_job(actor, job.user_id, job.worker_id, JobStatus(job.status)):
            raise NotFound("Job", job.id)

    return check


def _require_claimable(job: Job, now: datetime) -> None:
    if JobStatus(job.status) is not JobStatus.QUEUED:
        return  # the move itself refuses it, naming the status
    if leases.is_claimable(job.not_before, job.auto_cancel_at, now):
        return
    why = (
        f"waits out a retry backoff until {job.not_before.isoformat()}"
        if job.not_before is not None and job.not_before > now
        else "is past its deadline"
    )
    raise InvalidTransition(
        job.id,
        job.status,
        JobStatus.RENDERING,
        lifecycle.allowed_transitions(JobStatus(job.status)),
        message=f"Job {job.id} {why}: it cannot be claimed now.",
    )


def _refuse(actor: Actor, job: Job, why: str) -> None:
    if policy.can_see_job(actor, job.user_id, job.worker_id, JobStatus(job.status)):
        raise Forbidden(why)
    raise NotFound("Job", job.id)
