"""Jobs as Nexrender JSON: the full job or its status view, for a list of jobs in a constant
number of statements (render specs, histories for the timings, and the people named)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain import nexrender_jobs, policy
from domain.nexrender_jobs import JobFacts
from domain.policy import Actor
from domain.status import JobStage, JobStatus, Role
from models import Job, User
from service import queries


async def job_views(
    actor: Actor, jobs: list[Job], *, status_only: bool = False, picked: bool = False
) -> list[dict[str, Any]]:
    """Each job as `actor` may see it: Nexrender job JSON, or with `status_only` its status
    view. `picked`: the answer of a pickup, which shows the job `picked`."""
    if not jobs:
        return []
    ids = [job.id for job in jobs]
    specs = await queries.render_specs_of(jobs)
    entries = await queries.status_entries(ids)
    wanted = {job.user_id for job in jobs if policy.can_see_owner(actor)}
    wanted |= {job.worker_id for job in jobs if job.worker_id is not None}
    people = {
        person.id: person
        for person in await queries.users_by_ids(sorted(wanted))
        if person is not None
    }
    views = []
    for job in jobs:
        facts = _facts(actor, job, specs.get(job.id), entries.get(job.id, []), people, picked)
        view = nexrender_jobs.status_view if status_only else nexrender_jobs.job_view
        views.append(view(facts))
    return views


async def job_view(actor: Actor, job: Job, *, picked: bool = False) -> dict[str, Any]:
    return (await job_views(actor, [job], picked=picked))[0]


def _facts(
    actor: Actor,
    job: Job,
    spec: Mapping[str, Any] | None,
    entries: list[queries.StatusEntry],
    people: Mapping[str, User],
    picked: bool,
) -> JobFacts:
    status = JobStatus(job.status)
    stage = job.__dict__.get("stage")
    return JobFacts(
        uid=job.id,
        status=status,
        stage=None if stage is None else JobStage(stage),
        progress=job.progress,
        priority=job.priority,
        tags=job.tags,
        config=spec if isinstance(spec, Mapping) else None,
        template_path=job.template_path,
        error_message=job.error_message,
        cancelled_reason=job.cancelled_reason,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        creator=_creator(actor, people.get(job.user_id)),
        executor=_executor(actor, people.get(job.worker_id) if job.worker_id else None),
        timings=nexrender_jobs.timings_of(
            entries,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            status=status,
        ),
        picked=picked,
    )


def _creator(actor: Actor, owner: User | None) -> str | None:
    if owner is None or not policy.can_see_owner(actor):
        return None
    return str(owner.email)


def _executor(actor: Actor, worker: User | None) -> str | None:
    if worker is None or not policy.can_see_person(actor, worker.id, Role(worker.role)):
        return None
    return str(worker.name or worker.email)
