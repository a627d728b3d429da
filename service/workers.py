"""The workers view: every WORKER account, the jobs it holds, when it was last heard from and
whether it went silent. Three statements, however many workers and jobs there are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise import connections

from domain import leases, policy
from domain.errors import Forbidden
from domain.policy import Actor
from domain.status import JobStatus, Role
from models import Job, User
from service import clock, job_store, settings


@dataclass(frozen=True)
class WorkerActivity:
    worker: User
    jobs: list[Job]  # RENDERING under this worker, oldest claim first
    last_heartbeat_at: datetime | None  # the latest heartbeat over the jobs it holds
    last_seen_at: datetime | None  # its last claim, report or heartbeat of any job
    stalled: bool  # a job it holds has been silent past the stall timeout


async def worker_activity(actor: Actor) -> list[WorkerActivity]:
    """Every worker account, active ones first, then by address (admins only)."""
    if not policy.can_watch_workers(actor):
        raise Forbidden("Only admins see the workers.")
    workers = await User.filter(role=Role.WORKER).order_by("-is_active", "email", "id")
    if not workers:
        return []
    held: dict[str, list[Job]] = {worker.id: [] for worker in workers}
    rendering = (
        Job.filter(status=JobStatus.RENDERING, worker_id__in=list(held))
        .order_by("started_at", "id")
        .only(*job_store.ROW_FIELDS)
    )
    for job in await rendering:
        held[job.worker_id].append(job)
    last_actions = await _last_actions()
    now = clock.now()
    timeout = settings.current().stall_timeout_seconds
    return [
        _activity(worker, held[worker.id], last_actions.get(worker.id), now, timeout)
        for worker in workers
    ]


def _activity(
    worker: User, jobs: list[Job], last_action: datetime | None, now: datetime, timeout: float
) -> WorkerActivity:
    heartbeats = [job.heartbeat_at for job in jobs if job.heartbeat_at is not None]
    last_heartbeat = max(heartbeats, default=None)
    seen = [moment for moment in (last_heartbeat, last_action) if moment is not None]
    return WorkerActivity(
        worker=worker,
        jobs=jobs,
        last_heartbeat_at=last_heartbeat,
        last_seen_at=max(seen, default=None),
        stalled=any(leases.is_stalled(job_store.state_of(job), now, timeout) for job in jobs),
    )


async def _last_actions() -> dict[str, datetime]:
    """Each worker's newest event (a claim, a report, a hand-back): one index lookup per worker
    (idx_job_events_actor_at)."""
    rows = await connections.get("default").execute_query_dict(
        """SELECT "id", (SELECT MAX("at") FROM "job_events" WHERE "actor_id" = "users"."id")
            AS "last_action_at"
        FROM "users" WHERE "role" = 'WORKER'"""
    )
    return {
        row["id"]: job_store.moment_of(row["last_action_at"])
        for row in rows
        if row["last_action_at"]
    }
