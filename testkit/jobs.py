"""Valid jobs: the fields of a job that passes every rule, as a submission or straight into the
database (no lifecycle)."""

from __future__ import annotations

from typing import Any

from domain.validation import JobSubmission
from models import Job, User

VALID_JOB_FIELDS: dict[str, Any] = {
    "project_name": "Promo 2026",
    "output_name": "promo_final.mp4",
    "template_path": "C:\\jobs\\promo.aep",
    "data_path": "C:\\jobs\\promo.json",
    "output_path": "C:\\renders\\promo_final.mp4",
}


async def insert_job(owner: User, **overrides: Any) -> Job:
    """A row written directly, PENDING unless `overrides` says otherwise."""
    return await Job.create(user=owner, **{**VALID_JOB_FIELDS, **overrides})


def valid_submission(**overrides: Any) -> JobSubmission:
    """A submission that passes every rule and ends QUEUED."""
    return JobSubmission(**{**VALID_JOB_FIELDS, **overrides})
