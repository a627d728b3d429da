"""One server per SQLite file: SQLite has one writer, and live events stay in the process that
made the change, so a second `rendertrack serve` on the same file would fail requests with
"database is locked" and leave its subscribers blind to the first one's changes."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from tortoise.backends.base.config_generator import expand_db_url


class SQLiteInUse(Exception):
    """Another server holds the file."""


def hold_server_lock(url: str) -> IO[str] | None:
    """Takes the server lock of a SQLite file (`<file>.server-lock`) for as long as the returned
    file stays open (the process's lifetime); None for PostgreSQL or an in-memory database.
    Raises SQLiteInUse naming the process that holds it."""
    if not url.startswith("sqlite:"):
        return None
    path = expand_db_url(url)["credentials"]["file_path"]
    if path == ":memory:" or path.startswith("file:"):
        return None
    lock_path = Path(f"{path}.server-lock")
    lock = lock_path.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise SQLiteInUse(
            f"another rendertrack server (pid {holder}) is serving SQLite file {path}: one server "
            "per SQLite file; use PostgreSQL for several"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
