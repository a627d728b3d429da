"""The workers view for admins: each WORKER, what it holds, when it was last heard from."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from gql.context import require_actor
from gql.types import Job, User
from service.workers import WorkerActivity, worker_activity


@strawberry.type(description="A render worker as the queue sees it.")
class WorkerStatus:
    worker: User
    held_jobs: list[Job] = strawberry.field(
        description="The RENDERING jobs it holds now, oldest claim first."
    )
    last_heartbeat_at: datetime | None = strawberry.field(
        description="Its latest heartbeat over the jobs it holds; null when it holds none."
    )
    last_seen_at: datetime | None = strawberry.field(
        description="Its last claim, report or heartbeat of any job; null if it never acted."
    )
    stalled: bool = strawberry.field(
        description="A job it holds has been silent past the stall timeout (RENDERTRACK_"
        "STALL_TIMEOUT): the sweeper is about to take it back."
    )

    @classmethod
    def of(cls, activity: WorkerActivity) -> WorkerStatus:
        return cls(
            worker=User.of(activity.worker),
            held_jobs=[Job.of(job) for job in activity.jobs],
            last_heartbeat_at=activity.last_heartbeat_at,
            last_seen_at=activity.last_seen_at,
            stalled=activity.stalled,
        )


async def resolve_workers(info: Info) -> list[WorkerStatus]:
    return [WorkerStatus.of(activity) for activity in await worker_activity(require_actor(info))]
