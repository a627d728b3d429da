"""The SQL that reads and moves a job: one compare-and-set UPDATE per change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise import BaseDBAsyncClient

from domain.errors import NotFound
from domain.events import JobEvent, JobEventKind, kind_of_change
from domain.lifecycle import JobState
from domain.lookups import is_well_formed_id
from domain.status import JobStatus
from models import Job


class LostRace(Exception):
    """Another transaction changed the job between our read and our UPDATE."""


async def load(connection: BaseDBAsyncClient, job_id: str) -> Job:
    if not is_well_formed_id(job_id):
        raise NotFound("Job", repr(job_id))
    job = await Job.filter(id=job_id).using_db(connection).first()
    if job is None:
        raise NotFound("Job", job_id)
    return job


def state_of(job: Job) -> JobState:
    return JobState(
        id=job.id,
        status=JobStatus(job.status),
        progress=job.progress,
        started_at=job.started_at,
        logs=job.logs,
    )


async def compare_and_set(
    connection: BaseDBAsyncClient, job: Job, changes: dict[str, Any], now: datetime
) -> JobEvent:
    """Applies `changes` to the row only if it is still the version `job` was read at (same
    status and sequence); bumps the sequence, updates `job` in place and returns the event.
    Raises LostRace when the row moved on."""
    previous_status = JobStatus(job.status)
    sequence = job.sequence + 1
    written = (
        await Job.filter(id=job.id, status=previous_status, sequence=job.sequence)
        .using_db(connection)
        .update(**changes, sequence=sequence, updated_at=now)
    )
    if written != 1:
        raise LostRace(job.id)
    for field, value in {**changes, "sequence": sequence, "updated_at": now}.items():
        setattr(job, field, value)
    return event_of(job, kind_of_change(changes, previous_status), previous_status)


def event_of(job: Job, kind: JobEventKind, previous_status: JobStatus | None) -> JobEvent:
    return JobEvent(
        kind=kind,
        job_id=job.id,
        user_id=job.user_id,
        status=JobStatus(job.status),
        previous_status=previous_status,
        progress=job.progress,
        sequence=job.sequence,
        updated_at=job.updated_at,
        worker_id=job.worker_id,
    )


async def next_queued(connection: BaseDBAsyncClient) -> Job | None:
    """The job to claim next: highest priority, then oldest queued_at, then lowest id. On
    PostgreSQL the row is locked and rows locked by other claimers are skipped; SQLite has
    one writer, and the compare-and-set decides."""
    return (
        await Job.filter(status=JobStatus.QUEUED)
        .order_by("-priority", "queued_at", "id")
        .select_for_update(skip_locked=True)
        .using_db(connection)
        .first()
    )
