"""Test databases: a fresh, migrated database per session, emptied before each test.

One pytest process tests one backend, chosen by RENDERTRACK_TEST_DATABASE (sqlite, the default, or
postgres): Tortoise caches each model's SQL per connection name, so one process cannot switch
dialects. `make test` runs the suite once per backend. PostgreSQL needs
RENDERTRACK_TEST_POSTGRES_URL naming a server (each session creates and drops a database of its
own there); without it the PostgreSQL run is skipped, except under CI=true, where it must run.
`fresh_postgres_database` lives in testkit/postgres.py (the benchmarks use it too).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tortoise import connections

from app.migrations import apply_migrations
from testkit.postgres import fresh_postgres_database

POSTGRES_URL_VARIABLE = "RENDERTRACK_TEST_POSTGRES_URL"
BACKEND_VARIABLE = "RENDERTRACK_TEST_DATABASE"
BACKENDS = ("sqlite", "postgres")
SKIP_POSTGRES_REASON = (
    f"PostgreSQL half skipped: set {POSTGRES_URL_VARIABLE}=postgres://postgres@127.0.0.1:5432/postgres"
    " to run it (CI does)"
)


def postgres_server_url() -> str | None:
    return os.environ.get(POSTGRES_URL_VARIABLE, "").strip() or None


def selected_backend() -> str:
    backend = os.environ.get(BACKEND_VARIABLE, "sqlite").strip().lower() or "sqlite"
    if backend not in BACKENDS:
        raise ValueError(
            f"{BACKEND_VARIABLE} must be one of {', '.join(BACKENDS)}, not {backend!r}"
        )
    return backend


def only_in_pass(backend: str, why: str) -> pytest.MarkDecorator:
    """A module that runs in one pass of the suite: one whose subject is the same whatever the
    suite's database (a client of the API, a command on a file of its own), or that needs one."""
    return pytest.mark.skipif(
        selected_backend() != backend, reason=f"runs in the {backend} pass only: {why}"
    )


def describe_backend_choice() -> str:
    return f"{BACKEND_VARIABLE}={selected_backend()}"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@asynccontextmanager
async def migrated_database(backend: str, scratch: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        url = f"sqlite://{scratch / 'rendertrack-test.sqlite3'}"
        await apply_migrations(url)
        yield url
        return
    server_url = postgres_server_url()
    assert server_url, SKIP_POSTGRES_REASON
    async with fresh_postgres_database(server_url) as url:
        await apply_migrations(url)
        yield url


async def empty_tables() -> None:
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_script('TRUNCATE "job_events", "job_log_lines", "jobs", "users"')
    else:
        await connection.execute_script(
            'DELETE FROM "job_events"; DELETE FROM "job_log_lines"; DELETE FROM "jobs"; '
            'DELETE FROM "users";'
        )
