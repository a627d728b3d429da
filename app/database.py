"""Opening the database for a process: one Tortoise context, visible to every task."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

from tortoise import connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.context import TortoiseContext

from models.config import tortoise_config


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[TortoiseContext]:
    prepare_database_location(url)
    # Global fallback: Starlette runs requests in tasks other than the lifespan's (STACK-NOTES).
    async with TortoiseContext() as context:
        await context.init(config=tortoise_config(url), _enable_global_fallback=True)
        yield context


def prepare_database_location(url: str) -> None:
    """For a SQLite file: creates its folder and checks that the file opens, raising ValueError
    with a sentence saying why not. Call it before aerich or Tortoise first connect: when
    Tortoise 1.1.9 fails to open a SQLite file it keeps its connection lock, and the next query
    (aerich's) then waits for ever instead of failing."""
    if not url.startswith("sqlite:"):
        return
    path = expand_db_url(url)["credentials"]["file_path"]
    if path == ":memory:" or path.startswith("file:"):
        return
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(
            f"cannot create the folder {folder} of SQLite file {path}: {reason}"
        ) from None
    try:
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("SELECT 1")
    except sqlite3.Error as error:
        raise ValueError(f"cannot open SQLite file {path}: {error}") from None


async def ping_database() -> None:
    """Raises when the database does not answer."""
    await connections.get("default").execute_query("SELECT 1")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{location}"
