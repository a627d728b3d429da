"""The job_events table: every change recorded in the transaction that makes it, read back in
commit order by the live buses and by replays.

Positions (`job_events.id`) are handed out in commit order. SQLite has one writer at a time, so
its rowids already are. On PostgreSQL a sequence value is taken at INSERT, long before COMMIT, so
two transactions could commit in the other order; `record` therefore takes one transaction-level
advisory lock before it inserts, held until commit. PostgreSQL already serialises the commits of
transactions that NOTIFY (they take one lock in PreCommit_Notify), and every change NOTIFYs, so
the lock adds no new serialisation, only the order of the ids.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from tortoise import BaseDBAsyncClient, connections, fields

from domain.events import Duty, JobEvent, JobEventKind
from domain.lifecycle import TERMINAL_STATUSES
from domain.status import JobStatus
from models import Job
from models.job import SUBMITTED_FIELDS
from service import metrics
from service.job_store import STATE_FIELDS, moment_of, placeholder

# Any fixed number: the key of the advisory lock that orders event positions by commit.
_POSITION_LOCK_KEY = 0x7274_6576

_DATETIME_STATE_FIELDS = frozenset(
    name
    for name in STATE_FIELDS
    if isinstance(Job._meta.fields_map.get(name), fields.DatetimeField)
)

_COLUMNS = (
    "id",
    "job_id",
    "sequence",
    "kind",
    "previous_status",
    "status",
    "progress",
    "owner_id",
    "worker_id",
    "actor_id",
    "duty",
    "reason",
    "state",
    "at",
)
_SELECT = ", ".join(f'"{name}"' for name in _COLUMNS)
_INSERTED = _COLUMNS[1:]

# Attributes a reader memoises on a job object start with this (see gql.types.shared).
MEMO_PREFIX = "_rendertrack"
# On a job object that several readers resolve (an event's job): what they derived from it.
SHARED_MEMO = f"{MEMO_PREFIX}_shared"

# Events one read hands back at most.
READ_BATCH = 500


async def record(connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> list[JobEvent]:
    """Inserts `events` in the caller's transaction; returns them with their positions."""
    if not events:
        return []
    postgres = connection.capabilities.dialect == "postgres"
    if postgres:
        await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [_POSITION_LOCK_KEY])
    width = len(_INSERTED)
    rows = ", ".join(
        "(" + ", ".join(placeholder(connection, row * width + n + 1) for n in range(width)) + ")"
        for row in range(len(events))
    )
    values = [value for event in events for value in _row_of(event)]
    columns = ", ".join(f'"{name}"' for name in _INSERTED)
    inserted = await connection.execute_query_dict(
        f'INSERT INTO "job_events" ({columns}) VALUES {rows} RETURNING "id"', values
    )
    # Ids are handed out in the order of the VALUES rows, increasing.
    positions = sorted(int(row["id"]) for row in inserted)
    metrics.events_recorded(events)
    return [
        _with_position(event, position) for event, position in zip(events, positions, strict=True)
    ]


async def latest_position() -> int:
    """The position of the last committed event (0 when there is none)."""
    rows = await _db().execute_query_dict('SELECT MAX("id") AS "latest" FROM "job_events"')
    return int(rows[0]["latest"] or 0)


async def events_after(
    position: int,
    limit: int = READ_BATCH,
    *,
    owner_id: str | None = None,
    statuses: Sequence[JobStatus] | None = None,
    held_by_or_queued: str | None = None,
) -> list[JobEvent]:
    """Events after `position`, in commit order; optionally only those of one owner, in some
    statuses, or (a worker's view) held by that worker or QUEUED."""
    db = _db()
    values: list[Any] = [position]
    conditions = [f'"id" > {placeholder(db, 1)}']
    if owner_id is not None:
        values.append(owner_id)
        conditions.append(f'"owner_id" = {placeholder(db, len(values))}')
    if held_by_or_queued is not None:
        values.append(held_by_or_queued)
        conditions.append(
            f'("worker_id" = {placeholder(db, len(values))} OR "status" = \'QUEUED\')'
        )
    if statuses is not None:
        marks = []
        for status in statuses:
            values.append(JobStatus(status).value)
            marks.append(placeholder(db, len(values)))
        conditions.append(f'"status" IN ({", ".join(marks) or "NULL"})')
    rows = await db.execute_query_dict(
        f'SELECT {_SELECT} FROM "job_events" WHERE {" AND ".join(conditions)} '
        f'ORDER BY "id" LIMIT {int(limit)}',
        values,
    )
    return [_event_of(row) for row in rows]


async def job_events(job_id: str, after_sequence: int, limit: int = READ_BATCH) -> list[JobEvent]:
    """One job's events after `after_sequence`, oldest first."""
    db = _db()
    rows = await db.execute_query_dict(
        f'SELECT {_SELECT} FROM "job_events" '
        f'WHERE "job_id" = {placeholder(db, 1)} AND "sequence" > {placeholder(db, 2)} '
        f'ORDER BY "sequence" LIMIT {int(limit)}',
        [job_id, after_sequence],
    )
    return [_event_of(row) for row in rows]


async def job_bases(job_ids: Iterable[str]) -> dict[str, Job]:
    """The columns written at submission of each job (they never change), in one statement."""
    wanted = list(dict.fromkeys(job_ids))
    if not wanted:
        return {}
    fields = [name for name in SUBMITTED_FIELDS if name != "nexrender_config"]
    found = await Job.filter(id__in=wanted).only(*fields)
    return {job.id: job for job in found}


def job_at(base: Job, event: JobEvent) -> Job:
    """The job exactly as `event`'s change left it: its submitted columns from `base`, the rest
    from the event."""
    job = Job.__new__(Job)
    # Values memoised on a job object for its readers (names starting "_rendertrack") belong to
    # that object, as the change it shows; the copy starts without them.
    job.__dict__.update(
        (name, value) for name, value in base.__dict__.items() if not name.startswith(MEMO_PREFIX)
    )
    # One object per event, handed to every subscriber: its readers share what they derive.
    job.__dict__[SHARED_MEMO] = {}
    values = {
        **event.state,
        "status": event.status,
        "progress": event.progress,
        "sequence": event.sequence,
        "updated_at": event.updated_at,
    }
    for name, value in values.items():
        object.__setattr__(job, name, value)
    return job


async def prune(before: datetime, limit: int) -> int:
    """Deletes up to `limit` events older than `before` of jobs that are finished now (their
    rows stay); returns how many it deleted."""
    db = _db()
    terminal = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))
    rows = await db.execute_query_dict(
        f"""SELECT "e"."id" FROM "job_events" AS "e" JOIN "jobs" AS "j" ON "j"."id" = "e"."job_id"
        WHERE "e"."at" < {placeholder(db, 1)} AND "j"."status" IN ({terminal})
        ORDER BY "e"."at" LIMIT {int(limit)}""",
        [before],
    )
    ids = [int(row["id"]) for row in rows]
    if not ids:
        return 0
    marks = ", ".join(placeholder(db, n) for n in range(1, len(ids) + 1))
    await db.execute_query(f'DELETE FROM "job_events" WHERE "id" IN ({marks})', ids)
    return len(ids)


def _db() -> BaseDBAsyncClient:
    return connections.get("default")


def _row_of(event: JobEvent) -> list[Any]:
    return [
        event.job_id,
        event.sequence,
        event.kind.value,
        event.previous_status.value if event.previous_status else None,
        event.status.value,
        event.progress,
        event.user_id,
        event.worker_id,
        event.actor_id,
        event.duty.value if event.duty else None,
        event.reason,
        json.dumps(dict(event.state), default=_json_value, separators=(",", ":")),
        event.updated_at,
    ]


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, JobStatus):
        return value.value
    raise TypeError(f"cannot record {type(value).__name__} in an event's state")


def _with_position(event: JobEvent, position: int) -> JobEvent:
    return dataclasses.replace(event, position=position)


def _event_of(row: dict[str, Any]) -> JobEvent:
    state: dict[str, Any] = json.loads(row["state"])
    for name in _DATETIME_STATE_FIELDS.intersection(state):
        if state[name] is not None:
            state[name] = datetime.fromisoformat(state[name])
    previous = row["previous_status"]
    return JobEvent(
        kind=JobEventKind(row["kind"]),
        job_id=row["job_id"],
        user_id=row["owner_id"],
        status=JobStatus(row["status"]),
        previous_status=JobStatus(previous) if previous else None,
        progress=int(row["progress"]),
        sequence=int(row["sequence"]),
        updated_at=moment_of(row["at"]),
        worker_id=row["worker_id"],
        actor_id=row["actor_id"],
        duty=Duty(row["duty"]) if row["duty"] else None,
        reason=row["reason"],
        state=state,
        position=int(row["id"]),
    )


async def histories(
    wanted: Sequence[tuple[str, int]], limit: int
) -> dict[tuple[str, int], list[JobEvent]]:
    """For each (job id, after sequence): up to `limit` of the job's events after it, oldest
    first, in one statement for all of them (one index range per pair)."""
    pairs = list(dict.fromkeys(wanted))
    found: dict[tuple[str, int], list[JobEvent]] = {pair: [] for pair in pairs}
    # SQLite takes at most 500 terms in one compound SELECT.
    for start in range(0, len(pairs), _HISTORIES_PER_STATEMENT):
        chunk = pairs[start : start + _HISTORIES_PER_STATEMENT]
        for event in await _histories(chunk, limit):
            found[(event[0], event[1])].append(event[2])
    for events in found.values():
        events.sort(key=lambda event: event.sequence)
    return found


_HISTORIES_PER_STATEMENT = 200


async def _histories(
    pairs: Sequence[tuple[str, int]], limit: int
) -> list[tuple[str, int, JobEvent]]:
    db = _db()
    branches = " UNION ALL ".join(
        f"""SELECT * FROM (
            SELECT {_SELECT}, CAST({placeholder(db, 2 * n + 2)} AS INTEGER) AS "after_sequence"
            FROM "job_events" WHERE "job_id" = {placeholder(db, 2 * n + 1)}
            AND "sequence" > {placeholder(db, 2 * n + 2)}
            ORDER BY "sequence" LIMIT {int(limit)}) AS "page{n}" """
        for n in range(len(pairs))
    )
    rows = await db.execute_query_dict(branches, [value for pair in pairs for value in pair])
    return [(row["job_id"], int(row["after_sequence"]), _event_of(row)) for row in rows]
