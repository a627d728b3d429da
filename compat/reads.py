"""GET /jobs, /jobs/status, /jobs/:uid and /jobs/:uid/status: what the caller may see (the one
visibility rule; a job it may not see is 404)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from compat.answers import answer
from compat.views import job_views
from domain.errors import NotFound
from domain.policy import Actor
from models import Job
from service import queries


async def list_jobs(request: Request, actor: Actor) -> Response:
    """Workers: the jobs they may claim now, in claim order, then the ones they render (worker
    1.8 picks a `queued` one from this list). Others: their jobs, newest first."""
    return answer(await job_views(actor, await queries.nexrender_listing(actor)))


async def list_statuses(request: Request, actor: Actor) -> Response:
    jobs = await queries.nexrender_listing(actor)
    return answer(await job_views(actor, jobs, status_only=True))


async def get_job(request: Request, actor: Actor) -> Response:
    job = await visible_job(actor, request.path_params["uid"])
    return answer((await job_views(actor, [job]))[0])


async def get_status(request: Request, actor: Actor) -> Response:
    job = await visible_job(actor, request.path_params["uid"])
    return answer((await job_views(actor, [job], status_only=True))[0])


async def visible_job(actor: Actor, uid: str) -> Job:
    job = await queries.job_for(actor, uid)
    if job is None:
        raise NotFound("Job", uid)
    return job
