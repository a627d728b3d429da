"""A fresh PostgreSQL database, created on a server and dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


def asyncpg_url(url: str) -> str:
    """The URL as asyncpg wants it (postgresql://), from Tortoise's postgres:// form."""
    return "postgresql://" + url.split("://", 1)[1]


def with_database(server_url: str, name: str) -> str:
    """The server URL with its database name replaced by `name`."""
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@asynccontextmanager
async def fresh_postgres_database(
    server_url: str, prefix: str = "rendertrack_test_"
) -> AsyncIterator[str]:
    """Creates an empty database named `prefix` plus a random suffix on the server of
    `server_url`, yields its URL (same form as `server_url`) and drops it on exit, even with
    connections still open."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(asyncpg_url(server_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
