"""What a job's history records and a subscriber is told: one event per committed change.

Every change to a job is recorded as a JobEvent in the same transaction (service/event_store.py)
and is what live views receive and replay. An event carries the job's status and progress, who
made the change (a user, or a system duty), why (the error, the cancellation reason, or what the
change wrote to the log), and `state`: every other column a change may write, as it was right
after the change, so that the job can be shown exactly as that change left it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from domain.errors import BadUserInput
from domain.status import JobStatus


class JobEventKind(StrEnum):
    SNAPSHOT = "SNAPSHOT"  # the job as it is now, not a change (subscriptions only)
    CREATED = "CREATED"
    STATUS_CHANGED = "STATUS_CHANGED"
    PROGRESS = "PROGRESS"
    PRIORITY_CHANGED = "PRIORITY_CHANGED"
    LOG = "LOG"


class Duty(StrEnum):
    """Who changed a job when no user did."""

    STALL_RECOVERY = "stall-recovery"  # the sweeper: the worker went silent
    DEADLINE = "deadline"  # the sweeper: auto_cancel_at passed
    SYSTEM = "system"  # anything else the service does by itself


@dataclass(frozen=True)
class Author:
    """Who made a change: a user (`actor_id`), or a system duty."""

    actor_id: str | None = None
    duty: Duty | None = None

    @classmethod
    def of(cls, actor_id: str | None) -> Author:
        return cls(actor_id=actor_id) if actor_id is not None else cls(duty=Duty.SYSTEM)


@dataclass(frozen=True)
class JobEvent:
    kind: JobEventKind
    job_id: str
    user_id: str  # the job's owner
    status: JobStatus
    previous_status: JobStatus | None
    progress: int
    sequence: int  # the job's sequence after the change: 1, 2, 3, ... per job
    updated_at: datetime  # when the change was made
    # The worker holding the job after the change, or the one the change released.
    worker_id: str | None = None
    actor_id: str | None = None
    duty: Duty | None = None
    reason: str | None = None
    state: Mapping[str, object] = field(default_factory=dict)
    # Where the event stands in the history of every job, once recorded (commit order).
    position: int | None = None

    def by(self, author: Author) -> JobEvent:
        return dataclasses.replace(self, actor_id=author.actor_id, duty=author.duty)

    @property
    def cursor(self) -> str:
        if self.position is None:
            raise ValueError(f"event {self.job_id}#{self.sequence} was never recorded")
        return Cursor(self.position, self.sequence, self.updated_at).encode()


def kind_of_change(changes: Mapping[str, object], previous_status: JobStatus) -> JobEventKind:
    if "status" in changes and changes["status"] != previous_status:
        return JobEventKind.STATUS_CHANGED
    if "progress" in changes or "stage" in changes:
        return JobEventKind.PROGRESS
    if "priority" in changes:
        return JobEventKind.PRIORITY_CHANGED
    return JobEventKind.LOG


def reason_of(changes: Mapping[str, object], log: tuple[str, ...] = ()) -> str | None:
    """Why a change was made, as its history tells it: the error or cancellation reason it
    sets, else what it wrote to the log."""
    for name in ("error_message", "cancelled_reason"):
        value = changes.get(name)
        if isinstance(value, str) and value:
            return value
    return "\n".join(log) if log else None


_CURSOR_VERSION = "e1"
# What the columns hold: a position is a BIGINT, a sequence an INT.
_MAX_POSITION = 2**63 - 1
_MAX_SEQUENCE = 2**31 - 1


@dataclass(frozen=True)
class Cursor:
    """A place in the history: an event's position (for jobEvents), its job's sequence (for
    Job.events) and its time (a cursor older than the retention may point at pruned events)."""

    position: int
    sequence: int
    at: datetime

    def encode(self) -> str:
        milliseconds = int(self.at.timestamp() * 1000)
        raw = f"{_CURSOR_VERSION}:{self.position}:{self.sequence}:{milliseconds}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: object, field_name: str = "after") -> Cursor:
        """The cursor an event gave out; BAD_USER_INPUT naming `field_name` for anything else."""
        try:
            if not isinstance(text, str) or len(text) > 200:
                raise ValueError(text)
            padded = text + "=" * (-len(text) % 4)
            version, position, sequence, milliseconds = (
                base64.urlsafe_b64decode(padded.encode()).decode().split(":")
            )
            if version != _CURSOR_VERSION:
                raise ValueError(version)
            cursor = cls(
                position=int(position),
                sequence=int(sequence),
                at=datetime.fromtimestamp(int(milliseconds) / 1000, UTC),
            )
        except (ValueError, TypeError, OverflowError, OSError, binascii.Error, UnicodeError):
            raise BadUserInput.single(field_name, "is not a cursor this API gave out") from None
        if not (0 <= cursor.position <= _MAX_POSITION and 0 <= cursor.sequence <= _MAX_SEQUENCE):
            raise BadUserInput.single(field_name, "is not a cursor this API gave out")
        return cursor
