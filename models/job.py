"""A render job, exactly as the specification (spec 022) writes it, plus what the lifecycle needs:
the worker holding it and a per-job event sequence."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from domain.status import JobStatus
from models.base import CUID_LENGTH, TouchingManager, VerbatimJSONField, new_id, utc_now

PATH_COLUMN_LENGTH = 1024
NAME_COLUMN_LENGTH = 255


class Job(Model):
    id = fields.CharField(primary_key=True, max_length=CUID_LENGTH, default=new_id)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="jobs", on_delete=fields.RESTRICT
    )

    project_name = fields.CharField(max_length=NAME_COLUMN_LENGTH)
    output_name = fields.CharField(max_length=NAME_COLUMN_LENGTH)
    template_path = fields.CharField(max_length=PATH_COLUMN_LENGTH)
    data_path = fields.CharField(max_length=PATH_COLUMN_LENGTH)
    output_path = fields.CharField(max_length=PATH_COLUMN_LENGTH)

    status = fields.CharEnumField(JobStatus, max_length=16, default=JobStatus.PENDING)
    priority = fields.IntField(default=5)
    progress = fields.IntField(default=0)

    nexrender_job_id = fields.CharField(max_length=255, null=True, unique=True)
    nexrender_config = VerbatimJSONField(null=True)
    error_message = fields.TextField(null=True)
    logs = fields.TextField(null=True)

    queued_at = fields.DatetimeField(default=utc_now)
    started_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    estimated_time = fields.IntField(null=True, description="seconds")
    actual_time = fields.IntField(null=True, description="seconds")

    auto_cancel_at = fields.DatetimeField(null=True)
    cancelled_reason = fields.TextField(null=True)

    # The worker holding the job while it renders; only it (or an admin) may report on it.
    worker: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name="claimed_jobs", null=True, on_delete=fields.RESTRICT
    )
    # Bumped by every change, in the same UPDATE: subscribers see what they missed.
    sequence = fields.IntField(default=0)

    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "jobs"
        manager = TouchingManager()
        indexes = (
            Index(fields=("user_id",), name="idx_jobs_user"),
            Index(fields=("status",), name="idx_jobs_status"),
            Index(fields=("priority", "queued_at"), name="idx_jobs_priority_queued"),
            Index(fields=("auto_cancel_at",), name="idx_jobs_auto_cancel"),
        )

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"
