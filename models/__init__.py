"""Tortoise ORM models and the database configuration."""

from models.job import Job
from models.job_event import JobEventRecord
from models.job_log import JobLogLine
from models.user import User

__all__ = ["Job", "JobEventRecord", "JobLogLine", "User"]
