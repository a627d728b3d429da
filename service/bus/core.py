"""What both buses share: the subscriber registry and one dispatcher per process that reads the
job_events table in commit order.

The buses only say "there is something new" (a poke). The dispatcher then reads every event
after the last position it handled, in batches, so an event can be late but never lost: a
missed notification, a lost LISTEN connection or a failed read (retried with backoff) all end in
the same read. For each batch it builds each wanted event's job (as that change left it) once,
and routes the event by job id, by owner and to the subscribers of everything through
dictionaries, pushing one Delivery into each matching buffer without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tortoise import BaseDBAsyncClient

from domain.events import JobEvent
from models import Job
from models.reachability import log_retry
from service import metrics
from service.bus.subscription import Delivery, Match, Subscription

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_SIZE = 256
# Events one read of the table hands the dispatcher.
DISPATCH_BATCH = 500
# Without a poke, the dispatcher still looks this often (a notification is never all it has).
DEFAULT_POLL_INTERVAL = 2.0
# After a failed read, the dispatcher tries again after this, doubling up to the maximum.
RETRY_INITIAL = 0.05
RETRY_MAX = 5.0


@dataclass(frozen=True)
class Revocation:
    """A user's token was rotated or the user deactivated: every process closes their
    connections."""

    user_id: str


# Told of revocations, and (user_id None) when notices may have been lost: whoever keeps
# connections then checks them all again.
RevocationListener = Callable[[str | None], None]


class EventSource(Protocol):
    """Where the dispatcher reads committed events and the jobs they leave."""

    async def latest_position(self) -> int: ...

    async def events_after(self, position: int, limit: int) -> list[JobEvent]: ...

    async def jobs_at(self, events: Sequence[JobEvent]) -> dict[int, Job]:
        """Each event's job as its change left it, by the event's position."""


@runtime_checkable
class EventBus(Protocol):
    """An EventPublisher (stage/committed) that subscribers can listen to."""

    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        """Called inside the change's transaction, after its events were recorded."""

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
        self,
        match: Match,
        *,
        job_id: str | None = None,
        owner_id: str | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> Subscription: ...

    @property
    def subscriber_count(self) -> int: ...


class BusCore:
    """Registry + dispatcher. Subclasses poke it (`_poke`) and implement stage/committed."""

    def __init__(
        self, source: EventSource, *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        self._source = source
        self._poll_interval = poll_interval
        # Weak: a subscription nobody holds any more disappears by itself.
        self._all: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._by_job: dict[str, weakref.WeakSet[Subscription]] = {}
        self._by_owner: dict[str, weakref.WeakSet[Subscription]] = {}
        self._everything: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._poked = asyncio.Event()
        self._position: int | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._revocation_listeners: list[RevocationListener] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._all)

    def on_revocation(self, listener: RevocationListener) -> None:
        """Calls `listener(user_id)` for every revocation, from any process, and
        `listener(None)` when notices may have been lost."""
        self._revocation_listeners.append(listener)

    def subscribe(
        self,
        match: Match,
        *,
        job_id: str | None = None,
        owner_id: str | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> Subscription:
        """Events `match` accepts, among those of `job_id` (when given), else of `owner_id`'s
        jobs (when given), else of every job."""
        if self._stopped:
            raise RuntimeError("The event bus is stopped; nothing would ever arrive.")
        if job_id is not None:
            bucket = self._by_job.setdefault(job_id, weakref.WeakSet())
            key, index = job_id, self._by_job
        elif owner_id is not None:
            bucket = self._by_owner.setdefault(owner_id, weakref.WeakSet())
            key, index = owner_id, self._by_owner
        else:
            bucket, key, index = self._everything, None, None

        def unregister(subscription: Subscription) -> None:
            self._all.discard(subscription)
            bucket.discard(subscription)
            if index is not None and key is not None and not bucket and index.get(key) is bucket:
                del index[key]

        subscription = Subscription(match, buffer_size, unregister)
        self._all.add(subscription)
        bucket.add(subscription)
        return subscription

    async def start(self) -> None:
        if self._started:
            return
        if self._stopped:
            raise RuntimeError("A stopped event bus cannot start again; create a new one.")
        self._started = True
        try:
            self._position = await self._source.latest_position()
        except Exception as error:
            logger.warning("Cannot read the event position yet (%r); retrying", error)
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
        for subscription in list(self._all):
            subscription.close()

    def _poke(self) -> None:
        """Something new may have committed: the dispatcher reads the table again. Never
        waits."""
        self._poked.set()

    def _tell_revocation(self, user_id: str | None) -> None:
        for listener in list(self._revocation_listeners):
            try:
                listener(user_id)
            except Exception:
                logger.exception("A revocation listener failed on %s", user_id)

    async def _dispatch_forever(self) -> None:
        delay = RETRY_INITIAL
        while True:
            self._poked.clear()
            try:
                await self._catch_up()
                delay = RETRY_INITIAL
            except Exception as error:
                log_retry(logger, "Reading events failed", error, delay)
                metrics.BUS_READ_RETRIES.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._poked.wait()

    async def _catch_up(self) -> None:
        """Dispatches every event after the current position. A read that fails leaves the
        position where it was, so the next try reads the same events again."""
        if self._position is None:
            self._position = await self._source.latest_position()
            # Subscribers that came before the bus knew where it stood may have missed events.
            for subscription in list(self._all):
                subscription.push_gap()
        while True:
            events = await self._source.events_after(self._position, DISPATCH_BATCH)
            if not events:
                return
            await self._dispatch(events)
            last = events[-1].position
            assert last is not None
            self._position = last
            if len(events) < DISPATCH_BATCH:
                return

    async def _dispatch(self, events: Sequence[JobEvent]) -> None:
        wanted = [(event, subscribers) for event in events if (subscribers := self._route(event))]
        if not wanted:
            return
        jobs = await self._source.jobs_at([event for event, _ in wanted])
        for event, subscribers in wanted:
            job = jobs.get(event.position or 0)
            if job is None:
                logger.error("The job of event %s is gone; its subscribers replay", event.position)
                for subscription in subscribers:
                    subscription.push_gap()
                continue
            delivery = Delivery(event, job, event.sequence)
            for subscription in subscribers:
                subscription.push(delivery)

    def _route(self, event: JobEvent) -> list[Subscription]:
        candidates: list[Subscription] = list(self._everything)
        for index, key in ((self._by_job, event.job_id), (self._by_owner, event.user_id)):
            bucket = index.get(key)
            if bucket is None:
                continue
            if bucket:
                candidates.extend(bucket)
            else:  # its subscriptions were forgotten without being closed
                del index[key]
        return [subscription for subscription in candidates if _wants(subscription, event)]


def _wants(subscription: Subscription, event: JobEvent) -> bool:
    try:
        return subscription.matches(event)
    except Exception:
        logger.exception("A subscriber's match function failed on %s; not delivered", event)
        return False
