"""Jobs written straight into a scenario's database before its server serves them: QUEUED jobs
to claim or list, finished ones as history. Faster than the API by far (a million rows in
seconds), and the same rows on both databases.

Each row is built here in Python (`job_row`) and written with COPY on PostgreSQL (asyncpg) or
executemany on SQLite (sqlite3, timestamps in the text form Tortoise writes). The columns come
from the table as the latest migration left it: every column the loader knows is filled when
the table has it, and any other NOT NULL column without a default gets a value of its type
(named in the result, so a new column never passes silently).

Rows have no history (job_events): a claim's event is the first of its job. Finished rows are
70% COMPLETED, 20% FAILED, 10% CANCELLED, queued_at 10 s apart; QUEUED rows come after them,
1 s apart, so they are the newest.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.server import Database
from testkit.jobs import VALID_JOB_FIELDS
from testkit.postgres import asyncpg_url

HISTORY_START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 50_000


@dataclass(frozen=True)
class JobRows:
    owners: list[str]  # user ids, taken in turn
    queued: int = 0
    finished: int = 0
    first: int = 1  # the number of the first row; ids are 'b' + the number on 24 digits
    priority: int | None = None  # None: 1..10, spread
    render_spec: dict[str, Any] | None = None  # nexrender_config of every row
    worker: str | None = None  # the worker of finished rows


@dataclass
class Written:
    rows: int
    seconds: float
    filled_by_type: list[str] = field(default_factory=list)


FINISHED_STATUSES = ("COMPLETED",) * 7 + ("FAILED",) * 2 + ("CANCELLED",)


def job_row(number: int, status: str, queued_at: datetime, spec: JobRows) -> dict[str, Any]:
    """Every column the loader knows, for row `number`."""
    finished = status != "QUEUED"
    started = queued_at + timedelta(seconds=30)
    run = 60 + number % 900
    completed = started + timedelta(seconds=run)
    return {
        "id": "b" + str(number).rjust(24, "0"),
        "user_id": spec.owners[number % len(spec.owners)],
        "worker_id": spec.worker if finished else None,
        "project_name": f"Bench {number % 500}",
        "output_name": f"render_{number}.mp4",
        "template_path": VALID_JOB_FIELDS["template_path"],
        "data_path": VALID_JOB_FIELDS["data_path"],
        "output_path": VALID_JOB_FIELDS["output_path"],
        "status": status,
        "priority": spec.priority if spec.priority is not None else 1 + (number * 7) % 10,
        "progress": 100 if status == "COMPLETED" else 0 if status == "QUEUED" else number % 100,
        "nexrender_config": None if spec.render_spec is None else json.dumps(spec.render_spec),
        "queued_at": queued_at,
        "started_at": started if finished else None,
        "completed_at": completed if finished else None,
        "actual_time": run if finished else None,
        "error_message": "aerender exited with code 1" if status == "FAILED" else None,
        "cancelled_reason": "no longer needed" if status == "CANCELLED" else None,
        "sequence": 5 if finished else 3,
        "attempts": 1 if finished else 0,
        "lease": 1 if finished else 0,
        "created_at": queued_at,
        "updated_at": completed if finished else queued_at,
    }


def rows_of(spec: JobRows) -> Iterator[dict[str, Any]]:
    queue_start = HISTORY_START + timedelta(seconds=10 * (spec.first + spec.finished))
    for n in range(spec.finished):
        number = spec.first + n
        yield job_row(
            number,
            FINISHED_STATUSES[number % 10],
            HISTORY_START + timedelta(seconds=10 * number),
            spec,
        )
    for n in range(spec.queued):
        number = spec.first + spec.finished + n
        yield job_row(number, "QUEUED", queue_start + timedelta(seconds=n), spec)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # the column's type, lower case
    required: bool  # NOT NULL without a default


FILL_BY_KIND = {
    "int": 0,
    "integer": 0,
    "bigint": 0,
    "smallint": 0,
    "numeric": 0,
    "real": 0.0,
    "double precision": 0.0,
    "boolean": False,
    "bool": False,
    "text": "",
    "json": "{}",
    "jsonb": "{}",
}


def filler(column: Column) -> Any:
    kind = column.kind.split("(")[0].strip()
    if kind.startswith(("timestamp", "date")):
        return HISTORY_START
    if kind.startswith(("character", "varchar", "char")):
        return ""
    if kind not in FILL_BY_KIND:
        raise SystemExit(f"jobs.{column.name} ({column.kind}): no value to load it with")
    return FILL_BY_KIND[kind]


async def insert_jobs(database: Database, spec: JobRows) -> Written:
    started = time.perf_counter()
    if database.is_postgres:
        filled = await _postgres(database.url, spec)
    else:
        filled = await asyncio.to_thread(_sqlite, _sqlite_path(database.url), spec)
    return Written(spec.queued + spec.finished, time.perf_counter() - started, filled)


def _plan(columns: list[Column]) -> tuple[list[str], dict[str, Any], list[str]]:
    """(columns written, fillers of the required ones the loader does not know, their names)."""
    known = set(job_row(1, "QUEUED", HISTORY_START, JobRows(owners=["x"])))
    names, fillers, by_type = [], {}, []
    for column in columns:
        if column.name in known:
            names.append(column.name)
        elif column.required:
            names.append(column.name)
            fillers[column.name] = filler(column)
            by_type.append(f"{column.name} ({column.kind})")
    return names, fillers, by_type


async def _postgres(url: str, spec: JobRows) -> list[str]:
    connection = await asyncpg.connect(asyncpg_url(url))
    try:
        rows = await connection.fetch(
            "SELECT column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'jobs'"
            " ORDER BY ordinal_position"
        )
        columns = [
            Column(
                row["column_name"],
                row["data_type"],
                row["is_nullable"] == "NO" and row["column_default"] is None,
            )
            for row in rows
        ]
        names, fillers, by_type = _plan(columns)
        batch: list[tuple[Any, ...]] = []
        for row in rows_of(spec):
            batch.append(tuple(row[name] if name in row else fillers[name] for name in names))
            if len(batch) >= BATCH:
                await connection.copy_records_to_table("jobs", records=batch, columns=names)
                batch = []
        if batch:
            await connection.copy_records_to_table("jobs", records=batch, columns=names)
    finally:
        await connection.close()
    return by_type


def _sqlite_path(url: str) -> str:
    return url.split("://", 1)[1].split("?", 1)[0]


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # As Tortoise writes them, str(): no fraction when the microseconds are 0. The server
        # compares stored timestamps with its parameters as text: another form would not match.
        return str(value)
    return value


def _sqlite(path: str, spec: JobRows) -> list[str]:
    connection = sqlite3.connect(path, timeout=30)
    try:
        columns = [
            Column(row[1], row[2].lower(), bool(row[3]) and row[4] is None)
            for row in connection.execute('PRAGMA table_info("jobs")')
        ]
        names, fillers, by_type = _plan(columns)
        statement = (
            f'INSERT INTO "jobs" ({", ".join(f"{chr(34)}{n}{chr(34)}" for n in names)})'
            f" VALUES ({', '.join('?' for _ in names)})"
        )
        batch: list[tuple[Any, ...]] = []
        for row in rows_of(spec):
            batch.append(tuple(_sqlite_value(row[n] if n in row else fillers[n]) for n in names))
            if len(batch) >= BATCH:
                connection.executemany(statement, batch)
                batch = []
        if batch:
            connection.executemany(statement, batch)
        connection.commit()
    finally:
        connection.close()
    return by_type


async def analyze(database: Database) -> None:
    """VACUUM (ANALYZE) on PostgreSQL, ANALYZE on SQLite: statistics as a long-lived table
    has them."""
    if database.is_postgres:
        connection = await asyncpg.connect(asyncpg_url(database.url))
        try:
            await connection.execute('VACUUM (ANALYZE) "jobs"')
        finally:
            await connection.close()
    else:

        def run() -> None:
            connection = sqlite3.connect(_sqlite_path(database.url), timeout=30)
            try:
                connection.execute("ANALYZE")
                connection.commit()
            finally:
                connection.close()

        await asyncio.to_thread(run)


async def job_counts(database: Database, where: str = "TRUE") -> dict[str, int]:
    """Jobs per status (`where`: an SQL condition both dialects read)."""
    query = f'SELECT status, count(*) FROM "jobs" WHERE {where} GROUP BY status'
    return dict(await fetch(database, query))


async def fetch(database: Database, query: str) -> list[tuple[Any, ...]]:
    """Rows of one query, either database (no parameters: the harness writes its queries)."""
    if database.is_postgres:
        connection = await asyncpg.connect(asyncpg_url(database.url))
        try:
            return [tuple(row) for row in await connection.fetch(query)]
        finally:
            await connection.close()

    def run() -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(_sqlite_path(database.url), timeout=30)
        try:
            return list(connection.execute(query))
        finally:
            connection.close()

    return await asyncio.to_thread(run)
