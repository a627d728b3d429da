"""The bus for any number of processes on one PostgreSQL database: NOTIFY inside the change's
transaction (delivered at commit, never after a rollback), one LISTEN connection per process.

The LISTEN connection does not reconnect by itself and notifications sent while it is down
are gone: a supervisor task watches it, reconnects with backoff, and then sends every
subscription a Resync so consumers re-read the current state.
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
from service.bus.core import DEFAULT_MAX_BACKLOG, BusCore, JobLoader, Revocation
from service.bus.subscription import RESYNC

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL = "rendertrack_job_events"
APPLICATION_NAME = "rendertrack-event-bus"
MAX_PAYLOAD_BYTES = 8000


def encode(event: JobEvent) -> str:
    """Compact JSON of the event, checked against NOTIFY's payload limit."""
    payload = json.dumps(event.to_wire(), separators=(",", ":"))
    size = len(payload.encode("utf-8"))
    if size >= MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"Event payload for job {event.job_id} is {size} bytes; "
            f"PostgreSQL NOTIFY takes less than {MAX_PAYLOAD_BYTES}"
        )
    return payload


def decode(payload: str) -> JobEvent | Revocation:
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "revoked" in data:
        return Revocation(str(data["revoked"]))
    return JobEvent.from_wire(data)


def listen_dsn(database_url: str) -> str:
    """The LISTEN connection's target as a DSN string, for tools that take one; the bus itself
    connects with `models.config.asyncpg_connect_args`, the one reading of the URL."""
    return asyncpg_dsn(database_url)


class PostgresBus(BusCore):
    def __init__(
        self,
        dsn: str,
        load_job: JobLoader,
        *,
        channel: str = DEFAULT_CHANNEL,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        health_check_interval: float = 1.0,
        connect_timeout: float = 5.0,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
    ) -> None:
        super().__init__(load_job, max_backlog=max_backlog)
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
        """NOTIFY through the transaction's own connection: sent exactly at commit."""
        for event in events:
            await connection.execute_query(
                "SELECT pg_notify($1, $2)", [self._channel, encode(event)]
            )

    async def committed(self, events: Sequence[JobEvent]) -> None:
        """Nothing: the events come back through LISTEN, here and in every other process."""
        return None

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        payload = json.dumps({"revoked": user_id}, separators=(",", ":"))
        await connection.execute_query("SELECT pg_notify($1, $2)", [self._channel, payload])

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
        # asyncpg's callback: only queue it, the dispatcher task does the rest in order.
        self._enqueue(payload)

    def _decode(self, payload: str) -> JobEvent | Revocation:
        return decode(payload)

    async def _supervise(self) -> None:
        while True:
            if self._connection is None:
                self._connection = await self._reconnect()
                self._enqueue(RESYNC)
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
