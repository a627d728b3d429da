"""One line of a job's log. Lines are only ever added (and the oldest dropped past the cap), so
an append writes the line and nothing else."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class JobLogLine(Model):
    id = fields.BigIntField(primary_key=True)
    job: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Job", related_name="log_lines", on_delete=fields.CASCADE
    )
    # The line as read: "[<UTC time>] <text>".
    line = fields.TextField()
    # What it counts against the job's cap: UTF-8 bytes plus the line break.
    size = fields.IntField()
    # The job's sequence after the change that added the line: the log as of any change is the
    # lines up to its sequence.
    sequence = fields.IntField(default=0)

    class Meta:
        table = "job_log_lines"
        indexes = (Index(fields=("job_id", "id"), name="idx_job_log_lines_job"),)
