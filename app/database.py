"""Opening the database for a process: one Tortoise context, visible to every task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tortoise import connections
from tortoise.context import TortoiseContext

from models.config import tortoise_config


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[TortoiseContext]:
    # Global fallback: Starlette runs requests in tasks other than the lifespan's (STACK-NOTES).
    async with TortoiseContext() as context:
        await context.init(config=tortoise_config(url), _enable_global_fallback=True)
        yield context


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
