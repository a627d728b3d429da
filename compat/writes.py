"""POST /jobs (submit), PUT /jobs/:uid (a worker's report, or an admin's), DELETE /jobs/:uid
(cancel: the job and its history stay)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from compat.answers import answer
from compat.body import json_object
from compat.reads import visible_job
from compat.views import job_view
from domain import nexrender_jobs
from domain.errors import BadUserInput, Conflict, Forbidden, InvalidTransition, NotFound
from domain.nexrender_jobs import Report, ReportKind
from domain.policy import Actor
from domain.status import JobStatus, Role
from models import Job
from service import jobs, queries

CANCEL_REASON = "cancelled through the Nexrender API (DELETE /api/v1/jobs/:uid)"


async def create_job(request: Request, actor: Actor) -> Response:
    """The Nexrender job, validated like submitJob; an invalid one is refused (400, naming the
    fields of the job JSON) and nothing is stored."""
    body = await json_object(request)
    uid = jobs.new_job_id()
    derived = nexrender_jobs.submission_of(body, uid=uid)
    try:
        job = await jobs.submit_job(
            actor, derived.submission, tags=derived.tags, job_id=uid, refuse_invalid=True
        )
    except BadUserInput as refusal:
        raise BadUserInput(nexrender_jobs.fields_in_job(refusal.errors, derived.sources)) from None
    return answer(await job_view(actor, job))


async def update_job(request: Request, actor: Actor) -> Response:
    """The job moves as the report says (nexrender_jobs.parse_report); the answer is the job as
    stored. A report on a job that is no longer the worker's is refused (409, or 404 once
    another worker holds it) and changes nothing."""
    uid = request.path_params["uid"]
    body = await json_object(request)
    report = nexrender_jobs.parse_report(body)
    job: Job | None = None
    try:
        job = await visible_job(actor, uid)
        job = await _apply(actor, job, report)
    except (Forbidden, Conflict, InvalidTransition, NotFound) as refusal:
        if actor.role is not Role.WORKER:
            raise
        if await _lost_job_error(actor, uid, job, report):
            # Worker 1.8.16 reports `error` when its `finished` was refused (another worker
            # took the job over), and a refused `error` stops it for good: acknowledged with
            # its own report, nothing changed.
            return answer(nexrender_jobs.acknowledged_error(body, uid))
        if isinstance(refusal, Forbidden):
            # It sees the job (queued, or held before) but the job is not its own any more.
            raise Conflict(refusal.message) from None
        raise
    return answer(await job_view(actor, job))


async def _lost_job_error(actor: Actor, uid: str, job: Job | None, report: Report) -> bool:
    holds_it = job is not None and job.worker_id == actor.id
    if not nexrender_jobs.may_acknowledge_lost_job(report, holds_it=holds_it, held_it=True):
        return False  # decided without asking the history
    held_it = await queries.was_held_by(actor.id, uid)
    return nexrender_jobs.may_acknowledge_lost_job(report, holds_it=holds_it, held_it=held_it)


async def delete_job(request: Request, actor: Actor) -> Response:
    job = await jobs.cancel(request.path_params["uid"], CANCEL_REASON, actor=actor)
    return answer(await job_view(actor, job))


async def _apply(actor: Actor, job: Job, report: Report) -> Job:
    status = JobStatus(job.status)
    queued = status is JobStatus.QUEUED and report.kind is not ReportKind.QUEUED
    if actor.role is Role.WORKER and queued:
        job = await _take(actor, job, report)
        if report.kind is ReportKind.ACTIVE and not report.says_something:
            return job
    elif job.worker_id == actor.id and nexrender_jobs.acknowledges_end(status, report):
        return job
    return await _report(actor, job.id, report)


async def _take(actor: Actor, job: Job, report: Report) -> Job:
    """A worker's report on a queued job: `started`/`picked` claims it (worker 1.8 picks from
    the list); any other report takes it back if the sweeper requeued it for this worker's
    silence and nobody took it since."""
    if not report.claims:
        return await jobs.reclaim(job.id, actor)
    if not (await queries.render_specs([job.id]))[0]:
        raise Conflict(f"Job {job.id} has no Nexrender job to render: a GraphQL worker takes it.")
    return await jobs.claim(job.id, actor)


async def _report(actor: Actor, job_id: str, report: Report) -> Job:
    if report.kind is ReportKind.FINISHED:
        return await jobs.complete(job_id, actor=actor)
    if report.kind is ReportKind.ERROR:
        return await jobs.fail(job_id, report.error, actor=actor, retryable=False)
    if report.kind is ReportKind.QUEUED:
        return await jobs.requeue(job_id, actor=actor)
    return await jobs.report(
        job_id, actor, progress=report.progress, stage=report.stage, log_line=report.log_line
    )
