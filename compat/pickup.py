"""GET /jobs/pickup and /jobs/pickup/:tags: a worker claims the next job (queue order, never
one job to two workers), carrying every tag asked for; `{}` when there is none."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from compat.answers import answer
from compat.views import job_view
from domain.policy import Actor
from service import jobs


async def pickup(request: Request, actor: Actor) -> Response:
    tags = request.path_params.get("tags")
    # A Nexrender worker renders only a job with a spec, and its answer carries the spec.
    job = await jobs.claim_next(actor, tags=tags or (), only_renderable=True, read_render_spec=True)
    if job is None:
        return answer({})
    return answer(await job_view(actor, job, picked=True))
