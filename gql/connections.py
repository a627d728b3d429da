"""The open websockets of this process, by user: so that a revoked token closes them, and so
that one user cannot hold more than their share."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketState

from gql.defaults import DEFAULT_MAX_CONNECTIONS_PER_USER
from models import User
from service import metrics

logger = logging.getLogger(__name__)

# Every so often each process checks the users of its connections against the database: the
# backstop for a revocation whose notice cannot reach it (the CLI on SQLite, a lost NOTIFY).
RECHECK_INTERVAL_SECONDS = 5.0
# The close code Strawberry uses for a refused connection_init: "forbidden".
REVOKED_CLOSE_CODE = 4403
REVOKED_REASON = "Your API token was revoked or your account deactivated."
# After this many websockets went away, and once none has gone for TRIM_DELAY_SECONDS, the
# process collects what they left in reference cycles (a dropped connection's protocol, tasks and
# exceptions wait for the garbage collector's oldest generation) and hands glibc's freed heap
# pages back to the system, which glibc alone keeps: at 2,000 dropped subscribers its heap
# goes back to its size at rest (without: 15 MiB more). CPython's own arenas, where most of a
# connection's objects lie, go back only when none of their objects lives on (bench/memory.py).
TRIM_AFTER_RELEASES = 100
TRIM_DELAY_SECONDS = 1.0


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


MALLOC_TRIM = _malloc_trim()


class TooManyConnections(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} open connections, the most one user may hold "
            "(RENDERTRACK_MAX_CONNECTIONS_PER_USER): close one first."
        )
        self.limit = limit
        # Short enough for a websocket close frame's reason (123 bytes).
        self.reason = f"Too many connections: at most {limit} per user."


@dataclass(slots=True)
class _Holder:
    user_id: str
    token_hash: str


class ConnectionRegistry:
    def __init__(self, max_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER) -> None:
        self.max_per_user = max_per_user
        self._holders: dict[WebSocket, _Holder] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._released = 0  # websockets gone since memory was last handed back
        self._last_release = 0.0  # the event loop's time when the last one went
        self._trim: asyncio.TimerHandle | None = None
        self.trims = 0

    def __contains__(self, websocket: object) -> bool:
        return websocket in self._holders

    def count(self, user_id: str) -> int:
        return sum(1 for holder in self._holders.values() if holder.user_id == user_id)

    def admit(self, websocket: WebSocket, user: User) -> None:
        """Records an authenticated connection; TooManyConnections past the user's share."""
        if websocket in self._holders:
            return
        if self.count(user.id) >= self.max_per_user:
            raise TooManyConnections(self.max_per_user)
        self._holders[websocket] = _Holder(user.id, user.token_hash)
        metrics.WEBSOCKETS.inc()
        metrics.note_user(user.id)  # the websocket's log line names its user

    def discard(self, websocket: WebSocket) -> None:
        if self._holders.pop(websocket, None) is not None:
            metrics.WEBSOCKETS.dec()
            self._released += 1
            if self._released >= TRIM_AFTER_RELEASES:
                self._schedule_trim()

    def _schedule_trim(self) -> None:
        """Hands freed memory back TRIM_DELAY_SECONDS after the last of many websockets went:
        one timer for a whole wave of them, which moves itself on while they keep going."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._last_release = loop.time()
        if self._trim is None:
            self._trim = loop.call_later(TRIM_DELAY_SECONDS, self._trim_when_quiet)

    def stop(self) -> None:
        """At the app's shutdown: no hand-back is left pending."""
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None

    def _trim_when_quiet(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last_release
        if quiet < TRIM_DELAY_SECONDS:
            self._trim = loop.call_later(TRIM_DELAY_SECONDS - quiet, self._trim_when_quiet)
            return
        self._trim = None
        self._released = 0
        gc.collect()
        if MALLOC_TRIM is not None:
            MALLOC_TRIM()
        self.trims += 1

    def revoke(self, user_id: str | None) -> None:
        """The bus's revocation listener: closes the user's connections; with None (notices
        may have been lost), checks every connection's user against the database."""
        if user_id is None:
            self._spawn(self._recheck_all())
            return
        for websocket, holder in list(self._holders.items()):
            if holder.user_id == user_id:
                self._close(websocket)

    async def recheck_forever(self, interval_seconds: float = RECHECK_INTERVAL_SECONDS) -> None:
        """Runs until cancelled; a failed check (the database is down) waits for the next."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self._recheck_all()
            except Exception as error:
                logger.warning("Could not check open connections' users: %r", error)

    async def _recheck_all(self) -> None:
        held = dict(self._holders)
        if not held:
            return
        rows = await User.filter(id__in={h.user_id for h in held.values()}).values(
            "id", "is_active", "token_hash"
        )
        current = {row["id"]: row for row in rows}
        for websocket, holder in held.items():
            row = current.get(holder.user_id)
            if row is None or not row["is_active"] or row["token_hash"] != holder.token_hash:
                self._close(websocket)

    def _close(self, websocket: WebSocket) -> None:
        self.discard(websocket)
        self._spawn(_close(websocket))

    def _spawn(self, work: object) -> None:
        task = asyncio.ensure_future(work)  # type: ignore[arg-type]
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close(websocket: WebSocket) -> None:
    if websocket.application_state is WebSocketState.DISCONNECTED:
        return
    try:
        await websocket.close(code=REVOKED_CLOSE_CODE, reason=REVOKED_REASON)
    except Exception as error:  # the client went away meanwhile
        logger.info("Closing a revoked user's websocket: %r", error)
