"""Job statuses and user roles. Which statuses are final follows from the transition table
(domain.lifecycle.TERMINAL_STATUSES)."""

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "PENDING"
    VALIDATING = "VALIDATING"
    QUEUED = "QUEUED"
    RENDERING = "RENDERING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Role(StrEnum):
    ADMIN = "ADMIN"
    USER = "USER"
    WORKER = "WORKER"
