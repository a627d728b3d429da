"""The page scenario's yardstick: a plain Starlette JSON endpoint answering the same page of jobs
as GraphQL's `jobs(first: 50)`, through the same ORM and the same service reads, with no GraphQL.

`GET /jobs`: the caller from its bearer token (service.users.authenticate), the 50 newest jobs it
may see (service.queries.page_of_jobs, as `Query.jobs` calls it), their owners in one read
(users_by_ids, as the DataLoader does) and their queue positions in one statement
(queue_positions), answered as JSON with the fields page.py asks GraphQL for. Served by uvicorn in
one process, with its access log on (as `rendertrack serve` has it).

    RENDERTRACK_DATABASE_URL=... python -m bench.plain_server --port 8124
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.database import open_database
from models import Job, User
from service import queries, users

PAGE = 50


def _moment(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def job_json(job: Job, owner: User | None, position: int | None) -> dict[str, Any]:
    return {
        "id": job.id,
        "projectName": job.project_name,
        "outputName": job.output_name,
        "status": str(getattr(job.status, "value", job.status)),
        "priority": job.priority,
        "progress": job.progress,
        "queuedAt": _moment(job.queued_at),
        "createdAt": _moment(job.created_at),
        "queuePosition": position,
        "user": None
        if owner is None
        else {"id": owner.id, "email": owner.email, "name": owner.name},
    }


async def jobs_page(request: Request) -> JSONResponse:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    user = await users.authenticate(token.strip() if scheme.lower() == "bearer" else None)
    if user is None:
        return JSONResponse({"error": "unauthenticated"}, status_code=401)
    actor = users.actor_of(user)
    page = await queries.page_of_jobs(actor, queries.JobQuery(), queries.PageRequest(first=PAGE))
    owner_ids = list(dict.fromkeys(job.user_id for job in page.jobs))
    owners = dict(zip(owner_ids, await queries.users_by_ids(owner_ids), strict=True))
    positions = await queries.queue_positions(page.jobs)
    return JSONResponse(
        {
            "jobs": [
                job_json(job, owners.get(job.user_id), position)
                for job, position in zip(page.jobs, positions, strict=True)
            ]
        }
    )


def create_app(url: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_database(url):
            yield

    return Starlette(routes=[Route("/jobs", jobs_page, methods=["GET"])], lifespan=lifespan)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plain_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = create_app(os.environ["RENDERTRACK_DATABASE_URL"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
