"""Applying aerich migrations and checking that the models have none missing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from aerich import Command
from aerich.migrate import Migrate
from tortoise.context import TortoiseContext

from migrations import MIGRATIONS_LOCATION
from models.config import APP_LABEL, asyncpg_connect_args, is_postgres, tortoise_config

# Any fixed number: the key of the PostgreSQL advisory lock that serialises migrating processes.
_MIGRATION_LOCK_KEY = 0x7265_6E64


async def apply_migrations(url: str) -> list[str]:
    """Applies every pending migration in order; returns the names of those it applied."""
    async with _migration_lock(url), TortoiseContext():
        command = _command(url, MIGRATIONS_LOCATION)
        await command.init()
        return await command.upgrade(run_in_transaction=True)


async def pending_model_changes() -> bool:
    """True when models/ differ from the state the last migration recorded."""
    with tempfile.TemporaryDirectory() as scratch:
        location = Path(scratch) / "migrations"
        shutil.copytree(MIGRATIONS_LOCATION, location)
        async with TortoiseContext():
            await _command("sqlite://:memory:", location).init(offline=True)
            generated = await Migrate.migrate("drift", empty=False, no_input=True, offline=True)
            return bool(generated)


def _command(url: str, location: Path) -> Command:
    """aerich's Command, run inside a TortoiseContext of our own so that it leaves no global
    state behind (aerich would otherwise reuse a closed global context on a second call)."""
    return Command(tortoise_config=tortoise_config(url), app=APP_LABEL, location=str(location))


@asynccontextmanager
async def _migration_lock(url: str) -> AsyncIterator[None]:
    """On PostgreSQL several server processes may start at once: one migrates at a time."""
    if not is_postgres(url):
        yield
        return
    connection = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
        yield
    finally:
        await connection.close()
