"""A render job as the specification (spec 022) writes it, plus what the lifecycle and the queue
need: the worker holding it and its lease, attempts, a retry backoff and a per-job event sequence.

The spec's `logs` is kept line by line in `job_log_lines` (models/job_log.py); the job carries
only its size. The queue's partial indexes (claim order over QUEUED rows, stalled leases,
deadlines, recent completions) are written in SQL in the migration that adds them
(migrations/models/1_*): Tortoise cannot declare descending or partial-on-IN indexes.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from domain.paths import MAX_PATH_LENGTH
from domain.status import JobStage, JobStatus
from domain.tags import MAX_TAGS_LENGTH
from domain.validation import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, MAX_NAME_LENGTH
from models.base import CUID_LENGTH, TouchingManager, VerbatimJSONField, new_id, utc_now

# Written at submission and never again. A job as some change left it is these columns plus the
# change's recorded state (service/event_store.py); every other column is recorded with it.
SUBMITTED_FIELDS: tuple[str, ...] = (
    "id",
    "user_id",
    "project_name",
    "output_name",
    "template_path",
    "data_path",
    "output_path",
    "nexrender_config",
    "created_at",
    "auto_cancel_at",
    "max_attempts",
    "tags",
)


class Job(Model):
    id = fields.CharField(primary_key=True, max_length=CUID_LENGTH, default=new_id)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="jobs", on_delete=fields.RESTRICT
    )

    project_name = fields.CharField(max_length=MAX_NAME_LENGTH)
    output_name = fields.CharField(max_length=MAX_NAME_LENGTH)
    template_path = fields.CharField(max_length=MAX_PATH_LENGTH)
    data_path = fields.CharField(max_length=MAX_PATH_LENGTH)
    output_path = fields.CharField(max_length=MAX_PATH_LENGTH)

    status = fields.CharEnumField(JobStatus, max_length=16, default=JobStatus.PENDING)
    # What a RENDERING job is doing, as its worker reports it; null outside RENDERING.
    stage = fields.CharEnumField(JobStage, max_length=16, null=True)
    priority = fields.IntField(default=DEFAULT_PRIORITY)
    progress = fields.IntField(default=0)

    nexrender_job_id = fields.CharField(max_length=255, null=True, unique=True)
    nexrender_config = VerbatimJSONField(null=True)
    # Nexrender's tags, normalised (domain/tags.py): a pickup asking for tags takes only jobs
    # carrying all of them.
    tags = fields.CharField(max_length=MAX_TAGS_LENGTH, null=True)
    error_message = fields.TextField(null=True)

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

    # The lease: attempts so far (a hand-back gives one back), the most there may be, the
    # holder's last word, and (after a retryable failure) the time before which the job is not
    # handed out again.
    attempts = fields.IntField(default=0)
    # Bumped by every claim and never given back: the lease's fencing token, which reports may
    # carry to prove they come from the current holder.
    lease = fields.IntField(default=0)
    max_attempts = fields.IntField(default=DEFAULT_MAX_ATTEMPTS)
    heartbeat_at = fields.DatetimeField(null=True)
    not_before = fields.DatetimeField(null=True)

    # The log's bookkeeping: bytes kept in job_log_lines, and what the cap dropped.
    log_bytes = fields.IntField(default=0)
    log_dropped_lines = fields.IntField(default=0)
    log_dropped_bytes = fields.IntField(default=0)

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
