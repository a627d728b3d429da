"""Migration 1 applied to a database that already holds jobs (as a studio upgrading would): each
job's old log text becomes its log, RENDERING jobs get a lease the sweeper can act on, and the
new columns have their defaults. Run on the backend of the session, on a database of its own."""

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


async def apply_init_only(url: str, tmp_path: Path) -> None:
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_LOCATION, location)
    for later in (location / "models").glob("*.py"):
        if later.name != INIT:
            later.unlink()
    async with TortoiseContext():
        command = Command(
            tortoise_config=tortoise_config(url), app=APP_LABEL, location=str(location)
        )
        await command.init()
        assert await command.upgrade(run_in_transaction=True) == [INIT]


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

        assert await apply_migrations(url) == ["1_20261128204306_queue_core.py"]

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
