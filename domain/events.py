"""What a subscriber is told about a job: one event per committed change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.status import JobStatus


class JobEventKind(StrEnum):
    SNAPSHOT = "SNAPSHOT"  # the job as it is now, not a change: first event of a subscription
    CREATED = "CREATED"
    STATUS_CHANGED = "STATUS_CHANGED"
    PROGRESS = "PROGRESS"
    PRIORITY_CHANGED = "PRIORITY_CHANGED"
    LOG = "LOG"


@dataclass(frozen=True)
class JobEvent:
    """Small on purpose: it travels through PostgreSQL NOTIFY (under 8000 bytes)."""

    kind: JobEventKind
    job_id: str
    user_id: str
    status: JobStatus
    previous_status: JobStatus | None
    progress: int
    sequence: int
    updated_at: datetime
    worker_id: str | None = None  # the worker holding the job: it may see the job too

    def to_wire(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "job_id": self.job_id,
            "user_id": self.user_id,
            "status": self.status.value,
            "previous_status": self.previous_status.value if self.previous_status else None,
            "progress": self.progress,
            "sequence": self.sequence,
            "updated_at": self.updated_at.isoformat(),
            "worker_id": self.worker_id,
        }

    @classmethod
    def from_wire(cls, data: dict[str, object]) -> JobEvent:
        previous = data.get("previous_status")
        return cls(
            kind=JobEventKind(str(data["kind"])),
            job_id=str(data["job_id"]),
            user_id=str(data["user_id"]),
            status=JobStatus(str(data["status"])),
            previous_status=JobStatus(str(previous)) if previous else None,
            progress=int(str(data["progress"])),
            sequence=int(str(data["sequence"])),
            updated_at=datetime.fromisoformat(str(data["updated_at"])),
            worker_id=str(data["worker_id"]) if data.get("worker_id") else None,
        )


def kind_of_change(changes: dict[str, object], previous_status: JobStatus) -> JobEventKind:
    if "status" in changes and changes["status"] != previous_status:
        return JobEventKind.STATUS_CHANGED
    if "progress" in changes:
        return JobEventKind.PROGRESS
    if "priority" in changes:
        return JobEventKind.PRIORITY_CHANGED
    return JobEventKind.LOG
