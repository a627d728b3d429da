"""The query form of the one visibility rule (domain.policy.can_see_job): the jobs an actor may
see, as a filter every read path starts from."""

from __future__ import annotations

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from domain.policy import Actor
from domain.status import JobStatus, Role
from models import Job


def visible_jobs(actor: Actor) -> QuerySet[Job]:
    """ADMIN: every job; USER: their own; WORKER: the jobs it holds and the QUEUED ones."""
    if actor.is_admin:
        return Job.all()
    if actor.role is Role.WORKER:
        return Job.filter(Q(worker_id=actor.id) | Q(status=JobStatus.QUEUED))
    return Job.filter(user_id=actor.id)
