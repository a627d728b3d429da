"""The PostgreSQL pool gives connections back without a reset round trip (models/config.py)."""

from __future__ import annotations

import asyncpg
from tortoise import connections

from models.config import asyncpg_connect_args, keep_session
from tests.databases import only_in_pass

pytestmark = only_in_pass("postgres", "the pool's reset is asyncpg's")


async def test_a_released_connection_ran_nothing_after_the_last_statement(db: str) -> None:
    connection = connections.get("default")
    for _ in range(3):  # a connection used, released, and used again
        rows = await connection.execute_query_dict("SELECT pg_backend_pid() AS pid")
    backend_pid = rows[0]["pid"]
    watcher = await asyncpg.connect(**asyncpg_connect_args(db))
    try:
        last = await watcher.fetchval(
            "SELECT query FROM pg_stat_activity WHERE pid = $1", backend_pid
        )
    finally:
        await watcher.close()
    assert last == "SELECT pg_backend_pid() AS pid"  # not asyncpg's RESET ALL


async def test_a_transaction_left_open_is_still_rolled_back_on_release(db: str) -> None:
    # One connection, so the second acquire gets the one the first released.
    pool = await asyncpg.create_pool(
        **asyncpg_connect_args(db), min_size=1, max_size=1, reset=keep_session
    )
    try:
        async with pool.acquire() as raw:
            await raw.execute("BEGIN")
            await raw.execute("CREATE TEMPORARY TABLE left_open (n int)")
            pid = raw.get_server_pid()
        async with pool.acquire() as raw:
            assert raw.get_server_pid() == pid
            assert not raw.is_in_transaction()
            assert await raw.fetchval("SELECT to_regclass('pg_temp.left_open') IS NULL")
    finally:
        await pool.close()
