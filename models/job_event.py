"""One change to a job, as recorded in the same transaction as the change: the audit trail, and
what live views replay from.

`id` is the event's position in the history of every job. Writers take one lock before they
insert events (service/event_store.py), so positions are handed out in commit order: a reader
that has seen position N has seen every event at or below N that will ever commit.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from domain.events import JobEventKind
from domain.status import JobStatus
from models.base import CUID_LENGTH

DUTY_LENGTH = 32


class JobEventRecord(Model):
    id = fields.BigIntField(primary_key=True)
    job: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Job", related_name="events", on_delete=fields.CASCADE
    )
    # The job's sequence after the change: 1, 2, 3, ... with no gap for one job.
    sequence = fields.IntField()
    kind = fields.CharEnumField(JobEventKind, max_length=24)
    previous_status = fields.CharEnumField(JobStatus, max_length=16, null=True)
    status = fields.CharEnumField(JobStatus, max_length=16)
    progress = fields.IntField()
    # The job's owner (it never changes): events are routed and filtered by it.
    owner_id = fields.CharField(max_length=CUID_LENGTH)
    # The worker holding the job after the change, or the one the change released.
    worker_id = fields.CharField(max_length=CUID_LENGTH, null=True)
    # Who made the change: a user, or (actor_id null) a system duty.
    actor_id = fields.CharField(max_length=CUID_LENGTH, null=True)
    duty = fields.CharField(max_length=DUTY_LENGTH, null=True)
    # The error, the cancellation reason, or what the change wrote to the log.
    reason = fields.TextField(null=True)
    # Every other column of the job that a change may write, as JSON, as it was right after it.
    state = fields.TextField()
    at = fields.DatetimeField()

    class Meta:
        table = "job_events"
        unique_together = (("job", "sequence"),)
        indexes = (
            Index(fields=("at",), name="idx_job_events_at"),
            # A worker's last action (the workers query): the newest event it made, by index.
            Index(fields=("actor_id", "at"), name="idx_job_events_actor_at"),
        )
