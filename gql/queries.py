"""Query root: thin resolvers that authenticate, call one service function, translate back."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from gql.context import require_actor
from gql.types import Job, JobConnection, JobStats, User, resolve_jobs
from gql.workers import WorkerStatus, resolve_workers
from service import queries


@strawberry.type
class Query:
    @strawberry.field(description="The caller.")
    def me(self, info: Info) -> User:
        require_actor(info)
        return User.of(info.context.user)

    @strawberry.field(description="A job, or null when it does not exist or is not yours.")
    async def job(self, info: Info, id: strawberry.ID) -> Job | None:
        job = await queries.job_for(require_actor(info), str(id))
        return None if job is None else Job.of(job)

    jobs: JobConnection = strawberry.field(
        resolver=resolve_jobs,
        description="Jobs you may see, newest first unless ordered otherwise.",
    )

    @strawberry.field(
        description="QUEUED jobs in the order workers will claim them: those a claim could "
        "take now, then those waiting out a retry backoff (soonest first)."
    )
    async def queue(self, info: Info, first: int | None = None) -> list[Job]:
        return [Job.of(job) for job in await queries.queue(require_actor(info), first)]

    @strawberry.field(description="Jobs per status: yours, or everyone's for an admin.")
    async def job_stats(self, info: Info) -> JobStats:
        return JobStats.of(await queries.job_stats(require_actor(info)))

    @strawberry.field(description="Every user (admins only).")
    async def users(self, info: Info) -> list[User]:
        return [User.of(user) for user in await queries.all_users(require_actor(info))]

    workers: list[WorkerStatus] = strawberry.field(
        resolver=resolve_workers,
        description="Every WORKER account, active ones first: the jobs it holds, its last "
        "heartbeat, whether it went silent (admins only).",
    )
