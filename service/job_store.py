"""The SQL that reads and moves a job: one compare-and-set UPDATE per change.

Hot statements read the row without `nexrender_config` (ROW_FIELDS): a job's render spec is
read only when a caller asks for it. The claim and the sweeper's look-ups are written in SQL
whose status conditions are literals, so that the planner uses the partial indexes of migration
1 (a bound parameter does not let it prove a partial index's predicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise import BaseDBAsyncClient
from tortoise.fields.relational import ForeignKeyFieldInstance

from domain import leases
from domain.errors import NotFound
from domain.events import JobEvent, JobEventKind, kind_of_change
from domain.lifecycle import JobState
from domain.lookups import is_well_formed_id
from domain.status import JobStatus
from models import Job, User
from models.job import SUBMITTED_FIELDS

# Every column of a job but its render spec, which can be large and no hot path needs.
# (The foreign keys' columns join the projection only once Tortoise is initialised.)
ROW_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *(name for name in Job._meta.fields_db_projection if name != "nexrender_config"),
            "user_id",
            "worker_id",
        ]
    )
)
_ROW_COLUMNS = ", ".join(f'"{name}"' for name in ROW_FIELDS)

# Job columns an event has columns of its own for. (Its `worker_id` column is the worker the
# change concerns, which may be one it released; the job's own is in the state.)
_EVENT_COLUMNS = frozenset({"status", "progress", "sequence", "updated_at"})
# Every other column a change may write, recorded in each event's `state`: a job as some change
# left it is its submitted columns plus that change's event.
STATE_FIELDS: tuple[str, ...] = tuple(
    name for name in ROW_FIELDS if name not in SUBMITTED_FIELDS and name not in _EVENT_COLUMNS
)


class LostRace(Exception):
    """Another transaction changed the job between our read and our UPDATE."""


async def load(connection: BaseDBAsyncClient, job_id: str) -> Job:
    """The job without its render spec, in one prepared statement written here (the same
    projection as `Job.filter(id=...).only(*ROW_FIELDS)`, without building the query)."""
    if not is_well_formed_id(job_id):
        raise NotFound("Job", repr(job_id))
    rows = await connection.execute_query_dict(
        f'SELECT {_ROW_COLUMNS} FROM "jobs" WHERE "id" = {placeholder(connection, 1)} LIMIT 1',
        [job_id],
    )
    if not rows:
        raise NotFound("Job", job_id)
    return Job._init_from_db(**rows[0])


async def read_row(job_id: str) -> Job | None:
    """The job without its render spec (the event dispatcher's one read per event)."""
    return await Job.filter(id=job_id).only(*ROW_FIELDS).first()


def has_render_spec(job: Job) -> bool:
    """Whether `job` was read with its nexrender_config (ROW_FIELDS reads leave it out)."""
    return "nexrender_config" in job.__dict__


async def render_specs(connection: BaseDBAsyncClient, job_ids: list[str]) -> dict[str, Any]:
    """nexrender_config of each job, in one statement."""
    rows = (
        await Job.filter(id__in=job_ids).using_db(connection).values_list("id", "nexrender_config")
    )
    return dict(rows)


async def with_render_spec(connection: BaseDBAsyncClient, job: Job) -> Job:
    if not has_render_spec(job):
        job.nexrender_config = (await render_specs(connection, [job.id])).get(job.id)
    return job


def moment_of(value: datetime | str) -> datetime:
    """A timestamp as a raw statement answers it (SQLite: text), in UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def state_of(job: Job) -> JobState:
    return JobState(
        id=job.id,
        status=JobStatus(job.status),
        progress=job.progress,
        started_at=job.started_at,
        attempts=job.attempts,
        lease=job.lease,
        max_attempts=job.max_attempts,
        worker_id=job.worker_id,
        heartbeat_at=job.heartbeat_at,
        stage=getattr(job, "stage", None),
    )


async def compare_and_set(
    connection: BaseDBAsyncClient,
    job: Job,
    changes: dict[str, Any],
    now: datetime,
    *,
    reason: str | None = None,
    **guards: Any,
) -> JobEvent:
    """Applies `changes` to the row only if it is still the version `job` was read at (same
    status and sequence, and every extra `guards` filter still true); bumps the sequence,
    updates `job` in place and returns the event (`reason`: why, for the history). Raises
    LostRace when the row moved on."""
    _check_recordable(changes)
    previous_status = JobStatus(job.status)
    previous_worker = job.worker_id
    sequence = job.sequence + 1
    if guards:
        written = (
            await Job.filter(id=job.id, status=previous_status, sequence=job.sequence, **guards)
            .using_db(connection)
            .update(**changes, sequence=sequence, updated_at=now)
        )
    else:
        written = await _update_row(
            connection,
            {**changes, "sequence": sequence, "updated_at": now},
            {"id": job.id, "status": previous_status, "sequence": job.sequence},
        )
    if written != 1:
        raise LostRace(job.id)
    for field, value in {**changes, "sequence": sequence, "updated_at": now}.items():
        setattr(job, field, value)
    return event_of(
        job,
        kind_of_change(changes, previous_status),
        previous_status,
        reason=reason,
        released_worker=previous_worker,
    )


# Column -> Tortoise field, for turning a value into what the driver is sent (to_db_value).
_COLUMN_FIELDS = {
    **{name: Job._meta.fields_map[name] for name in Job._meta.fields_map},
    **{
        column: Job._meta.fields_map[field]
        for field, column in Job._meta.fields_db_projection.items()
    },
}


async def _update_row(
    connection: BaseDBAsyncClient, values: dict[str, Any], where: dict[str, Any]
) -> int:
    """`UPDATE "jobs" SET ... WHERE <equalities>`: the statement Tortoise writes for
    `Job.filter(**where).update(**values)` (same columns, same order, same conversions), built
    directly; answers the rows it changed."""
    marks = iter(range(1, len(values) + len(where) + 1))
    assignments = ",".join(f'"{name}"={placeholder(connection, next(marks))}' for name in values)
    conditions = " AND ".join(f'"{name}"={placeholder(connection, next(marks))}' for name in where)
    arguments = [_db_value(name, value) for name, value in (*values.items(), *where.items())]
    changed, _ = await connection.execute_query(
        f'UPDATE "jobs" SET {assignments} WHERE {conditions}', arguments
    )
    return changed


def _db_value(column: str, value: Any) -> Any:
    field = _COLUMN_FIELDS.get(column)
    if field is None or value is None or isinstance(field, ForeignKeyFieldInstance):
        return value  # the foreign keys' columns hold the ids as given
    return field.to_db_value(value, None)


async def renew_lease(connection: BaseDBAsyncClient, job: Job, now: datetime) -> bool:
    """The holder is alive: heartbeat_at = now, if the job is still RENDERING under the same
    holder. Not a change anyone follows: no sequence, no event, updated_at untouched."""
    renewed = (
        await Job.filter(id=job.id, status=JobStatus.RENDERING, worker_id=job.worker_id)
        .using_db(connection)
        .update(heartbeat_at=now, updated_at=job.updated_at)
    )
    if renewed == 1:
        job.heartbeat_at = now
    return renewed == 1


async def worker_name(connection: BaseDBAsyncClient, worker_id: str | None) -> str:
    """How messages name a worker: its name and id, or the id alone."""
    if worker_id is None:
        return "(none)"
    names = await User.filter(id=worker_id).using_db(connection).values_list("name", flat=True)
    return f"{names[0]} ({worker_id})" if names and names[0] else worker_id


def event_of(
    job: Job,
    kind: JobEventKind,
    previous_status: JobStatus | None,
    *,
    reason: str | None = None,
    released_worker: str | None = None,
) -> JobEvent:
    """The event of the change that left `job` as it is (`released_worker`: the worker it held
    before, which the event names when the change released it)."""
    return JobEvent(
        kind=kind,
        job_id=job.id,
        user_id=job.user_id,
        status=JobStatus(job.status),
        previous_status=previous_status,
        progress=job.progress,
        sequence=job.sequence,
        updated_at=job.updated_at,
        worker_id=job.worker_id or released_worker,
        reason=reason,
        state={name: getattr(job, name) for name in STATE_FIELDS},
    )


def _check_recordable(changes: dict[str, Any]) -> None:
    """A change may write only what its event records; anything else would make the job shown
    for an event differ from the job that change left."""
    unrecorded = sorted(set(changes) - set(STATE_FIELDS) - _EVENT_COLUMNS)
    if unrecorded:
        raise ValueError(f"a change may not write {unrecorded}: its event does not record them")


def _index(connection: BaseDBAsyncClient, name: str) -> str:
    """SQLite without ANALYZE statistics may prefer the plain status index; naming the partial
    index makes it read that one (and fail loudly if the index were ever missing). PostgreSQL's
    planner picks it by itself."""
    return "" if connection.capabilities.dialect == "postgres" else f' INDEXED BY "{name}"'


def placeholder(connection: BaseDBAsyncClient, number: int) -> str:
    return f"${number}" if connection.capabilities.dialect == "postgres" else f"?{number}"


async def next_claimable(
    connection: BaseDBAsyncClient,
    now: datetime,
    *,
    tags: Sequence[str] = (),
    only_renderable: bool = False,
    read_render_spec: bool = False,
) -> Job | None:
    """The job to claim next: highest priority, then oldest queued_at, then lowest id, among
    QUEUED jobs out of their retry backoff and not past their deadline; with `tags`, only jobs
    carrying every one of them, with `only_renderable` only jobs with a nexrender_config, and
    with `read_render_spec` the job's nexrender_config read with the row.
    Reads idx_jobs_claim in order (the other conditions filter the rows it reads), so its cost
    does not grow with the jobs that are not QUEUED. On PostgreSQL the row is locked and rows
    locked by other claimers are skipped; SQLite has one writer, and the compare-and-set
    decides."""
    values: list[Any] = [now, now]
    filters = ""
    if only_renderable:
        filters += ' AND "nexrender_config" IS NOT NULL'
    # ',a,b,' holds ',a,' exactly when a is one of the tags: no LIKE, so no wildcard to escape.
    find = "strpos" if connection.capabilities.dialect == "postgres" else "instr"
    for tag in tags:
        values.append(f",{tag},")
        mark = placeholder(connection, len(values))
        filters += f""" AND {find}(',' || "tags" || ',', {mark}) > 0"""
    p1, p2 = placeholder(connection, 1), placeholder(connection, 2)
    lock = " FOR UPDATE SKIP LOCKED" if connection.capabilities.dialect == "postgres" else ""
    columns = f'{_ROW_COLUMNS}, "nexrender_config"' if read_render_spec else _ROW_COLUMNS
    rows = await connection.execute_query_dict(
        f"""SELECT {columns} FROM "jobs"{_index(connection, "idx_jobs_claim")}
        WHERE "status" = 'QUEUED'
          AND ("not_before" IS NULL OR "not_before" <= {p1})
          AND ("auto_cancel_at" IS NULL OR "auto_cancel_at" > {p2}){filters}
        ORDER BY "priority" DESC, "queued_at", "id"
        LIMIT 1{lock}""",
        values,
    )
    return Job._init_from_db(**rows[0]) if rows else None


async def stalled_job_ids(
    connection: BaseDBAsyncClient, silent_since: datetime, limit: int
) -> list[str]:
    """RENDERING jobs whose holder has said nothing since `silent_since`, longest silent first
    (idx_jobs_lease)."""
    p1 = placeholder(connection, 1)
    rows = await connection.execute_query_dict(
        f"""SELECT "id" FROM "jobs"{_index(connection, "idx_jobs_lease")}
        WHERE "status" = 'RENDERING' AND "heartbeat_at" < {p1}
        ORDER BY "heartbeat_at" LIMIT {int(limit)}""",
        [silent_since],
    )
    return [row["id"] for row in rows]


async def overdue_job_ids(connection: BaseDBAsyncClient, now: datetime, limit: int) -> list[str]:
    """Unfinished jobs whose auto_cancel_at has passed, earliest deadline first
    (idx_jobs_deadline)."""
    p1 = placeholder(connection, 1)
    rows = await connection.execute_query_dict(
        f"""SELECT "id" FROM "jobs"{_index(connection, "idx_jobs_deadline")}
        WHERE "status" IN ('PENDING', 'VALIDATING', 'QUEUED', 'RENDERING')
          AND "auto_cancel_at" <= {p1}
        ORDER BY "auto_cancel_at" LIMIT {int(limit)}""",
        [now],
    )
    return [row["id"] for row in rows]


# The template index keys on a prefix of the path: a whole path of 1024 characters may be too
# long for a PostgreSQL btree entry.
TEMPLATE_KEY_LENGTH = 200


async def recent_render_times(
    connection: BaseDBAsyncClient,
    *,
    template_path: str | None,
    project_name: str | None,
    limit: int,
) -> list[int]:
    """actual_time of the latest `limit` COMPLETED jobs of the same template (or project)."""
    p1 = placeholder(connection, 1)
    if template_path is not None:
        p2 = placeholder(connection, 2)
        key = f'substr("template_path", 1, {TEMPLATE_KEY_LENGTH})'
        condition = f'{key} = substr({p1}, 1, {TEMPLATE_KEY_LENGTH}) AND "template_path" = {p2}'
        values: list[Any] = [template_path, template_path]
        index = "idx_jobs_done_template"
    else:
        condition = f'"project_name" = {p1}'
        values = [project_name]
        index = "idx_jobs_done_project"
    rows = await connection.execute_query_dict(
        f"""SELECT "actual_time" FROM "jobs"{_index(connection, index)}
        WHERE "status" = 'COMPLETED' AND {condition} AND "actual_time" IS NOT NULL
        ORDER BY "completed_at" DESC LIMIT {int(limit)}""",
        values,
    )
    return [int(row["actual_time"]) for row in rows]


async def completed_since(connection: BaseDBAsyncClient, since: datetime) -> int:
    """How many jobs COMPLETED after `since` (idx_jobs_done_at)."""
    p1 = placeholder(connection, 1)
    rows = await connection.execute_query_dict(
        f"""SELECT COUNT(*) AS "finished" FROM "jobs"{_index(connection, "idx_jobs_done_at")}
        WHERE "status" = 'COMPLETED' AND "completed_at" > {p1}""",
        [since],
    )
    return int(rows[0]["finished"])


async def queue_positions(
    connection: BaseDBAsyncClient, jobs: list[Job], now: datetime
) -> dict[str, int]:
    """1-based places in the claim order of the jobs among `jobs` that a claim could hand out
    now (QUEUED, out of backoff, before their deadline), in one statement: the claimable queue
    is numbered down to the last of them and no further (range scans of idx_jobs_claim: the
    higher priorities, then the same priority up to that job)."""
    claimable = [
        job
        for job in jobs
        if JobStatus(job.status) is JobStatus.QUEUED
        and leases.is_claimable(job.not_before, job.auto_cancel_at, now)
    ]
    if not claimable:
        return {}
    last = max(claimable, key=lambda job: (-job.priority, job.queued_at, job.id))
    p = [placeholder(connection, number) for number in range(1, 5)]
    id_marks = ", ".join(placeholder(connection, 5 + index) for index in range(len(claimable)))
    rows = await connection.execute_query_dict(
        f"""SELECT "id", "position" FROM (
            SELECT "id", ROW_NUMBER() OVER (
                ORDER BY "priority" DESC, "queued_at", "id") AS "position"
            FROM "jobs"
            WHERE "status" = 'QUEUED' AND (
                "priority" > {p[0]}
                OR ("priority" = {p[0]} AND ("queued_at", "id") <= ({p[1]}, {p[2]})))
              AND ("not_before" IS NULL OR "not_before" <= {p[3]})
              AND ("auto_cancel_at" IS NULL OR "auto_cancel_at" > {p[3]})
        ) AS "numbered" WHERE "id" IN ({id_marks})""",
        [last.priority, last.queued_at, last.id, now, *(job.id for job in claimable)],
    )
    return {row["id"]: int(row["position"]) for row in rows}
