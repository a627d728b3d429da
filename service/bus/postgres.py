"""The bus for any number of processes on one PostgreSQL database: one NOTIFY inside each
change's transaction (delivered at commit, never after a rollback), one LISTEN connection per
process.

A notification only pokes the dispatcher, which reads the events from the job_events table; the
table, not the notification, is what is delivered. So when the LISTEN connection is lost (it
does not reconnect by itself, and notifications sent while it is down are gone), a supervisor
reconnects it with backoff and pokes the dispatcher, which reads whatever committed meanwhile.
Revocation notices travel on the same channel; after a reconnect every connection's user is
checked again, since a notice may have been lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence

import asyncpg
from tortoise import BaseDBAsyncClient

from domain.events import JobEvent
from models.config import asyncpg_connect_args, asyncpg_dsn
from service import metrics
from service.bus.core import DEFAULT_POLL_INTERVAL, BusCore, EventSource

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL = "rendertrack_job_events"
APPLICATION_NAME = "rendertrack-event-bus"
# What a change's notification says: read the table.
EVENTS_PAYLOAD = "events"


def revocation_payload(user_id: str) -> str:
    return json.dumps({"revoked": user_id}, separators=(",", ":"))


def revoked_user(payload: str) -> str | None:
    """The user a revocation notice names; None for any other payload."""
    if not payload.startswith("{"):
        return None
    data = json.loads(payload)
    if not isinstance(data, dict) or not isinstance(data.get("revoked"), str):
        raise ValueError(f"not a revocation notice: {payload[:200]!r}")
    return data["revoked"]


def listen_dsn(database_url: str) -> str:
    """The LISTEN connection's target as a DSN string, for tools that take one; the bus itself
    connects with `models.config.asyncpg_connect_args`, the one reading of the URL."""
    return asyncpg_dsn(database_url)


class PostgresBus(BusCore):
    def __init__(
        self,
        dsn: str,
        source: EventSource,
        *,
        channel: str = DEFAULT_CHANNEL,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        health_check_interval: float = 1.0,
        connect_timeout: float = 5.0,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        super().__init__(source, poll_interval=poll_interval)
        # The application's URL read once, as Tortoise reads it; a bad option is refused here.
        self._connect_args = asyncpg_connect_args(dsn)
        self._channel = channel
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._health_check_interval = health_check_interval
        self._connect_timeout = connect_timeout
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def listen_backend_pid(self) -> int | None:
        """The server process id of the LISTEN connection (None while it is down)."""
        connection = self._connection
        if connection is None or connection.is_closed():
            return None
        return connection.get_server_pid()

    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        """One NOTIFY through the transaction's own connection: sent exactly at commit."""
        if events:
            await connection.execute_query(
                "SELECT pg_notify($1, $2)", [self._channel, EVENTS_PAYLOAD]
            )

    async def committed(self, events: Sequence[JobEvent]) -> None:
        """Nothing: the notification comes back through LISTEN, here and in every process."""
        return None

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        await connection.execute_query(
            "SELECT pg_notify($1, $2)", [self._channel, revocation_payload(user_id)]
        )

    async def revocation_committed(self, user_id: str) -> None:
        """Nothing: the notice comes back through LISTEN, here and in every other process."""
        return None

    async def start(self) -> None:
        """Connects and LISTENs. A database that cannot be reached now does not stop the
        server from starting: the supervisor keeps trying, with backoff, in the background."""
        if self._started:
            return
        await super().start()
        try:
            self._connection = await self._connect()
        except Exception as error:
            logger.warning(
                "Cannot LISTEN on %s yet (%r); retrying in the background", self._channel, error
            )
        self._supervisor = asyncio.create_task(self._supervise(), name="event-bus-listen")

    async def stop(self) -> None:
        if self._stopped:
            return
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._close_connection()
        await super().stop()

    async def _connect(self) -> asyncpg.Connection:
        # The bus's own connect timeout paces its reconnects; the URL's is Tortoise's.
        arguments = {**self._connect_args, "timeout": self._connect_timeout}
        arguments["server_settings"] = {
            **self._connect_args.get("server_settings", {}),
            "application_name": APPLICATION_NAME,
        }
        connection = await asyncpg.connect(**arguments)
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(self._channel, self._on_notification)
        except BaseException:
            connection.terminate()
            raise
        self._lost = lost
        logger.info("Listening on %s (backend pid %s)", self._channel, connection.get_server_pid())
        return connection

    def _on_notification(
        self, connection: asyncpg.Connection, pid: int, channel: str, payload: str
    ) -> None:
        try:
            user_id = revoked_user(payload)
        except ValueError:
            logger.exception("Malformed notification on %s skipped", self._channel)
            return
        if user_id is None:
            self._poke()
        else:
            self._tell_revocation(user_id)

    async def _supervise(self) -> None:
        while True:
            if self._connection is None:
                self._connection = await self._reconnect()
                metrics.BUS_RECONNECTS.inc()
                # What committed while nobody listened is in the table; revocation notices
                # may be lost, so every connection is checked again.
                self._poke()
                self._tell_revocation(None)
            await self._until_lost()
            logger.warning("LISTEN connection on %s lost; reconnecting", self._channel)
            await self._close_connection()

    async def _until_lost(self) -> None:
        """Returns once the LISTEN connection is closed or stops answering."""
        connection = self._connection
        assert connection is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._health_check_interval):
                    await self._lost.wait()
                return
            if connection.is_closed():
                return
            try:
                await connection.fetchval("SELECT 1", timeout=self._health_check_interval * 2)
            except Exception as error:
                logger.warning("LISTEN connection failed its health check: %r", error)
                return

    async def _reconnect(self) -> asyncpg.Connection:
        delay = self._initial_backoff
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._connect()
            except Exception as error:
                delay = min(delay * 2, self._max_backoff)
                logger.warning("Reconnecting LISTEN failed (%r); next try in %.1fs", error, delay)

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            async with asyncio.timeout(2):
                await connection.close()
        except Exception:
            connection.terminate()
