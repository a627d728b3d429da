"""What both buses share: the subscriber registry and one ordered dispatcher per process.

The dispatcher takes incoming events in order of arrival, reads each job once (only when a
subscriber wants the event) and pushes one Delivery into every matching subscriber's buffer.
Pushing never waits, so a slow subscriber never slows the publisher or the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tortoise import BaseDBAsyncClient

from domain.events import JobEvent
from models import Job
from service.bus.subscription import RESYNC, Delivery, Match, Resync, Subscription

logger = logging.getLogger(__name__)

JobLoader = Callable[[str], Awaitable[Job | None]]

DEFAULT_BUFFER_SIZE = 256
# Events waiting for the dispatcher; beyond this it drops them and tells everyone to Resync.
DEFAULT_MAX_BACKLOG = 10_000


@dataclass(frozen=True)
class Revocation:
    """A user's token was rotated or the user deactivated: every process closes their
    connections."""

    user_id: str


# Told of revocations, and (user_id None) of a Resync: notices may have been lost, so whoever
# keeps connections checks them all again.
RevocationListener = Callable[[str | None], None]

# What the dispatcher takes: an event, a raw payload for `decode`, a revocation, or a Resync
# for everyone.
Incoming = JobEvent | str | Resync | Revocation


@runtime_checkable
class EventBus(Protocol):
    """An EventPublisher (stage/committed) that subscribers can listen to."""

    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        """Called inside the change's transaction."""

    async def committed(self, events: Sequence[JobEvent]) -> None:
        """Called after the transaction committed."""

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        """Inside the transaction that revokes the user's token or deactivates them."""

    async def revocation_committed(self, user_id: str) -> None:
        """After that transaction committed."""

    def on_revocation(self, listener: RevocationListener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Closes every subscription (and the LISTEN connection); idempotent."""

    def subscribe(
        self, match: Match, *, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> Subscription: ...

    @property
    def subscriber_count(self) -> int: ...


class BusCore:
    """Registry + dispatcher. Subclasses feed `_enqueue` and implement stage/committed."""

    def __init__(self, load_job: JobLoader, *, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self._load_job = load_job
        self._max_backlog = max_backlog
        # Weak: a subscription nobody holds any more disappears by itself.
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._backlog: deque[Incoming] = deque()
        self._backlog_ready = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._revocation_listeners: list[RevocationListener] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def on_revocation(self, listener: RevocationListener) -> None:
        """Calls `listener(user_id)` for every revocation, from any process, and
        `listener(None)` after a Resync."""
        self._revocation_listeners.append(listener)

    def subscribe(self, match: Match, *, buffer_size: int = DEFAULT_BUFFER_SIZE) -> Subscription:
        if self._stopped:
            raise RuntimeError("The event bus is stopped; nothing would ever arrive.")
        subscription = Subscription(match, buffer_size, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    async def start(self) -> None:
        if self._started:
            return
        if self._stopped:
            raise RuntimeError("A stopped event bus cannot start again; create a new one.")
        self._started = True
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="event-bus-dispatch")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        self._backlog.clear()
        for subscription in list(self._subscriptions):
            subscription.close()

    def _enqueue(self, item: Incoming) -> None:
        """Never waits. Before start(), items wait for it; after stop(), they are dropped."""
        if self._stopped:
            return
        if len(self._backlog) >= self._max_backlog:
            logger.warning(
                "Event dispatch fell %d events behind: dropping them, subscribers resync",
                len(self._backlog),
            )
            self._backlog.clear()
            self._backlog.append(RESYNC)
        self._backlog.append(item)
        self._backlog_ready.set()

    def _decode(self, payload: str) -> JobEvent | Revocation:
        raise NotImplementedError(f"{type(self).__name__} does not take raw payloads")

    def _tell_revocation(self, user_id: str | None) -> None:
        for listener in list(self._revocation_listeners):
            try:
                listener(user_id)
            except Exception:
                logger.exception("A revocation listener failed on %s", user_id)

    async def _dispatch_forever(self) -> None:
        while True:
            while not self._backlog:
                self._backlog_ready.clear()
                await self._backlog_ready.wait()
            item = self._backlog.popleft()
            try:
                await self._dispatch(item)
            except Exception:
                logger.exception("Could not dispatch %r; skipped", item)

    async def _dispatch(self, item: Incoming) -> None:
        if isinstance(item, Resync):
            for subscription in list(self._subscriptions):
                subscription.push_resync()
            self._tell_revocation(None)
            return
        if isinstance(item, str):
            try:
                decoded = self._decode(item)
            except Exception:
                logger.exception("Malformed event payload skipped: %.200r", item)
                return
        else:
            decoded = item
        if isinstance(decoded, Revocation):
            self._tell_revocation(decoded.user_id)
            return
        event = decoded
        subscribers = [s for s in list(self._subscriptions) if _wants(s, event)]
        if not subscribers:
            return
        try:
            job = await self._load_job(event.job_id)
        except Exception:
            logger.exception("Could not read job %s for its event; delivered without it", event)
            job = None
        delivery = Delivery(event, job)
        for subscription in subscribers:
            subscription.push(delivery)


def _wants(subscription: Subscription, event: JobEvent) -> bool:
    try:
        return subscription.matches(event)
    except Exception:
        logger.exception("A subscriber's match function failed on %s; not delivered", event)
        return False
