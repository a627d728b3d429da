"""Who may see and do what. Roles: ADMIN everything, USER their own jobs, WORKER the jobs it
holds and the claimable queue. A job the actor may not see is reported as not found, never as
forbidden.

`can_see_job` is the one visibility rule: every read path (job, jobs, queue, jobStats, nested
lists, both subscriptions on every delivery) uses it or its query form in
service/visibility.py."""

from __future__ import annotations

from dataclasses import dataclass

from domain.status import JobStatus, Role


@dataclass(frozen=True)
class Actor:
    id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def can_see_job(actor: Actor, owner_id: str, worker_id: str | None, status: JobStatus) -> bool:
    """ADMIN: every job. USER: their own. WORKER: the jobs it holds, and the QUEUED ones (a
    worker may claim any of them, so it may read their render spec first)."""
    if actor.is_admin or actor.id == owner_id:
        return True
    if actor.role is not Role.WORKER:
        return False
    return (worker_id is not None and actor.id == worker_id) or status is JobStatus.QUEUED


def can_see_owner(actor: Actor) -> bool:
    """Who submitted a job (their email and name): never shown to workers."""
    return actor.role is not Role.WORKER


def can_list_jobs_of(actor: Actor, owner_id: str) -> bool:
    """Filtering lists and event streams by owner: your own, or anyone's for an admin."""
    return actor.is_admin or actor.id == owner_id


def can_manage_job(actor: Actor, owner_id: str) -> bool:
    """Cancel, retry, change priority."""
    return actor.is_admin or actor.id == owner_id


def can_submit_jobs(actor: Actor) -> bool:
    return actor.role in (Role.ADMIN, Role.USER)


def can_claim_jobs(actor: Actor) -> bool:
    return actor.role is Role.WORKER


def can_work_on_job(actor: Actor, worker_id: str | None) -> bool:
    """Report progress, complete, fail, requeue: the worker holding the job, or an admin."""
    return actor.is_admin or (worker_id is not None and actor.id == worker_id)


def can_manage_users(actor: Actor) -> bool:
    return actor.is_admin


def can_watch_workers(actor: Actor) -> bool:
    """The workers view (who holds what, who went silent) is the farm operator's: admins."""
    return actor.is_admin


def can_see_person(viewer: Actor, person_id: str, person_role: Role) -> bool:
    """Who made a change or held a job, as a job's history names them: admins see everyone,
    anyone sees themselves, users see the admins and workers who touched their jobs, and
    workers see admins (never the owners of the jobs they render, nor other workers)."""
    if viewer.is_admin or viewer.id == person_id or person_role is Role.ADMIN:
        return True
    return viewer.role is Role.USER and person_role is Role.WORKER
