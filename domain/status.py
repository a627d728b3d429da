"""Job statuses, render stages and user roles. Which statuses are final follows from the
transition table (domain.lifecycle.TERMINAL_STATUSES)."""

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "PENDING"
    VALIDATING = "VALIDATING"
    QUEUED = "QUEUED"
    RENDERING = "RENDERING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class JobStage(StrEnum):
    """What a RENDERING job is doing, as its worker reports it (Nexrender's `render:*` states
    map onto these); null outside RENDERING."""

    SETUP = "SETUP"
    DOWNLOADING = "DOWNLOADING"
    PRERENDER = "PRERENDER"
    RENDERING = "RENDERING"
    POSTRENDER = "POSTRENDER"
    UPLOADING = "UPLOADING"
    CLEANUP = "CLEANUP"


class Role(StrEnum):
    ADMIN = "ADMIN"
    USER = "USER"
    WORKER = "WORKER"
