"""Migrations applied to a database that already holds jobs (as a studio upgrading would).
Migration 1: each job's old log text becomes its log, RENDERING jobs get a lease the sweeper can
act on, and the new columns have their defaults. Migration 2: the log lines get their job's
sequence and the job_events table starts empty. Migration 3: jobs get no stage and no tags.
Run on the backend of the session, on a
database of its own."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aerich import Command
from tortoise.context import TortoiseContext

from app.migrations import apply_migrations
from migrations import MIGRATIONS_LOCATION
from models.config import APP_LABEL, tortoise_config
from tests.databases import fresh_postgres_database, postgres_server_url, selected_backend

INIT = "0_20261128133505_init.py"
QUEUE_CORE = "1_20261128204306_queue_core.py"
JOB_EVENTS = "2_20261128233947_job_events.py"
NEXRENDER_COMPAT = "3_20261129003553_nexrender_compat.py"
WORKER_ACTIVITY = "4_20261129024323_worker_activity.py"
USER = ("u1", "ada@example.com", "Ada", "USER", "h" * 64, True)
OLD_JOBS = [
    # id, status, logs, started_at
    ("j-rendering", "RENDERING", "[2026-01-01T00:00:00+00:00] frame 1\nframe 2", True),
    ("j-queued", "QUEUED", None, False),
    ("j-done", "COMPLETED", "[2026-01-01T00:00:00+00:00] done", True),
]


@asynccontextmanager
async def empty_database(tmp_path: Path) -> AsyncIterator[str]:
    if selected_backend() == "sqlite":
        yield f"sqlite://{tmp_path / 'upgrade.sqlite3'}"
        return
    server = postgres_server_url()
    if server is None:
        pytest.skip("PostgreSQL is not configured")
    async with fresh_postgres_database(server) as url:
        yield url


async def apply_only(url: str, tmp_path: Path, names: list[str]) -> None:
    """Applies the named migrations (the first ones, in order) and none of the later ones."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_LOCATION, location)
    for later in (location / "models").glob("*.py"):
        if later.name not in names:
            later.unlink()
    async with TortoiseContext():
        command = Command(
            tortoise_config=tortoise_config(url), app=APP_LABEL, location=str(location)
        )
        await command.init()
        assert await command.upgrade(run_in_transaction=True) == names


async def apply_init_only(url: str, tmp_path: Path) -> None:
    await apply_only(url, tmp_path, [INIT])


INSERT_USER = (
    'INSERT INTO "users" (id, email, name, role, token_hash, is_active, created_at, updated_at) '
    "VALUES ({marks}, '2026-01-01 00:00:00+00:00', '2026-01-01 00:00:00+00:00')"
)
INSERT_JOB = (
    'INSERT INTO "jobs" (id, user_id, project_name, output_name, template_path, data_path, '
    "output_path, status, priority, progress, logs, queued_at, started_at, sequence, "
    "created_at, updated_at) VALUES ({marks})"
)


def job_values(job: tuple[str, str, str | None, bool]) -> list[Any]:
    job_id, status, logs, started = job
    stamp = "2026-01-01 00:00:00+00:00"
    started_at = "2026-01-01 00:05:00+00:00" if started else None
    return [job_id, "u1", "Promo", "promo.mp4", "/t.aep", "/d.json", "/o.mp4", status, 5, 10,
            logs, stamp, started_at, 3, stamp, stamp]  # fmt: skip


async def run_sql(url: str, statements: list[tuple[str, list[Any]]]) -> list[list[dict]]:
    results: list[list[dict]] = []
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("://", 1)[1]) as connection:
            connection.row_factory = sqlite3.Row
            for sql, values in statements:
                marks = ", ".join("?" * len(values))
                rows = connection.execute(sql.replace("{marks}", marks), values).fetchall()
                results.append([dict(row) for row in rows])
        return results
    connection = await asyncpg.connect("postgresql://" + url.split("://", 1)[1])
    try:
        for sql, values in statements:
            marks = ", ".join(f"${n}" for n in range(1, len(values) + 1))
            typed = [_pg_value(value) for value in values]
            rows = await connection.fetch(sql.replace("{marks}", marks), *typed)
            results.append([dict(row) for row in rows])
    finally:
        await connection.close()
    return results


def _pg_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("2026-01-01 00:"):
        return datetime.fromisoformat(value)
    return value


async def test_migration_1_keeps_old_logs_and_gives_rendering_jobs_a_lease(
    tmp_path: Path,
) -> None:
    async with empty_database(tmp_path) as url:
        await apply_init_only(url, tmp_path)
        await run_sql(
            url,
            [(INSERT_USER, list(USER))] + [(INSERT_JOB, job_values(job)) for job in OLD_JOBS],
        )

        assert await apply_migrations(url) == [
            QUEUE_CORE,
            JOB_EVENTS,
            NEXRENDER_COMPAT,
            WORKER_ACTIVITY,
        ]

        jobs, lines = await run_sql(
            url,
            [
                (
                    "SELECT id, attempts, lease, max_attempts, heartbeat_at, started_at, "
                    'not_before, log_bytes, log_dropped_lines FROM "jobs" ORDER BY id',
                    [],
                ),
                ('SELECT job_id, line, size FROM "job_log_lines" ORDER BY id', []),
            ],
        )
    by_id = {row["id"]: row for row in jobs}
    rendering = by_id["j-rendering"]
    assert rendering["heartbeat_at"] is not None
    assert str(rendering["heartbeat_at"]) == str(rendering["started_at"])
    assert rendering["attempts"] == 1 and by_id["j-done"]["attempts"] == 1
    assert rendering["lease"] == 1 and by_id["j-queued"]["lease"] == 0
    assert by_id["j-queued"]["attempts"] == 0 and by_id["j-queued"]["heartbeat_at"] is None
    assert all(row["max_attempts"] == 3 and row["not_before"] is None for row in jobs)
    assert all(row["log_dropped_lines"] == 0 for row in jobs)

    old_logs = {job_id: logs for job_id, _, logs, _ in OLD_JOBS if logs}
    assert {row["job_id"]: row["line"] for row in lines} == old_logs
    for row in lines:
        assert row["size"] == len(row["line"].encode()) + 1
        assert by_id[row["job_id"]]["log_bytes"] == row["size"]
    assert by_id["j-queued"]["log_bytes"] == 0


# The jobs table as migration 1 left it (no logs column).
INSERT_JOB_V1 = (
    'INSERT INTO "jobs" (id, user_id, project_name, output_name, template_path, data_path, '
    "output_path, status, priority, progress, queued_at, sequence, created_at, updated_at) "
    "VALUES ({marks})"
)
INSERT_LINE = 'INSERT INTO "job_log_lines" (job_id, line, size) VALUES ({marks})'
INSERT_EVENT = (
    'INSERT INTO "job_events" (job_id, sequence, kind, previous_status, status, progress, '
    "owner_id, worker_id, actor_id, duty, reason, state, at) VALUES ({marks})"
)
SEQUENCES = {"j-rendering": 4, "j-done": 9}
LINES = [("j-rendering", "[t] frame 1"), ("j-rendering", "[t] frame 2"), ("j-done", "[t] ok")]
EVENT = ["j-done", 10, "STATUS_CHANGED", "RENDERING", "COMPLETED", 100, "u1", None, None,
         "sweeper", None, "{}", "2026-01-01 00:10:00+00:00"]  # fmt: skip


def job_v1_values(job_id: str, sequence: int) -> list[Any]:
    stamp = "2026-01-01 00:00:00+00:00"
    return [job_id, "u1", "Promo", "promo.mp4", "/t.aep", "/d.json", "/o.mp4", "RENDERING", 5,
            10, stamp, sequence, stamp, stamp]  # fmt: skip


async def test_migration_2_gives_log_lines_their_jobs_sequence_and_starts_no_history(
    tmp_path: Path,
) -> None:
    async with empty_database(tmp_path) as url:
        await apply_only(url, tmp_path, [INIT, QUEUE_CORE])
        await run_sql(
            url,
            [(INSERT_USER, list(USER))]
            + [(INSERT_JOB_V1, job_v1_values(job_id, seq)) for job_id, seq in SEQUENCES.items()]
            + [(INSERT_LINE, [job_id, line, len(line) + 1]) for job_id, line in LINES],
        )

        assert await apply_migrations(url) == [JOB_EVENTS, NEXRENDER_COMPAT, WORKER_ACTIVITY]

        events_before, lines, _, events_after = await run_sql(
            url,
            [
                ('SELECT COUNT(*) AS n FROM "job_events"', []),
                ('SELECT job_id, line, sequence FROM "job_log_lines" ORDER BY id', []),
                (INSERT_EVENT, EVENT),
                ('SELECT id, job_id, sequence, kind, duty, state FROM "job_events"', []),
            ],
        )
    assert events_before == [{"n": 0}]
    assert [(row["job_id"], row["line"]) for row in lines] == LINES
    assert [row["sequence"] for row in lines] == [SEQUENCES[job_id] for job_id, _ in LINES]
    [event] = events_after
    assert isinstance(event["id"], int) and event["id"] >= 1
    assert (event["job_id"], event["sequence"], event["kind"]) == ("j-done", 10, "STATUS_CHANGED")
    assert (event["duty"], event["state"]) == ("sweeper", "{}")


async def test_migration_3_leaves_existing_jobs_without_stage_or_tags(tmp_path: Path) -> None:
    async with empty_database(tmp_path) as url:
        await apply_only(url, tmp_path, [INIT, QUEUE_CORE, JOB_EVENTS])
        await run_sql(
            url,
            [(INSERT_USER, list(USER))]
            + [(INSERT_JOB_V1, job_v1_values(job_id, seq)) for job_id, seq in SEQUENCES.items()],
        )

        assert await apply_migrations(url) == [NEXRENDER_COMPAT, WORKER_ACTIVITY]

        [jobs] = await run_sql(url, [('SELECT id, stage, tags FROM "jobs" ORDER BY id', [])])
    assert jobs == [{"id": job_id, "stage": None, "tags": None} for job_id in sorted(SEQUENCES)]


async def test_migration_4_indexes_each_actors_events(tmp_path: Path) -> None:
    async with empty_database(tmp_path) as url:
        await apply_only(url, tmp_path, [INIT, QUEUE_CORE, JOB_EVENTS, NEXRENDER_COMPAT])

        assert await apply_migrations(url) == [WORKER_ACTIVITY]

        listing = (
            "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'job_events'"
            if url.startswith("postgres")
            else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'job_events'"
        )
        [indexes] = await run_sql(url, [(listing, [])])
    assert "idx_job_events_actor_at" in {row["name"] for row in indexes}
