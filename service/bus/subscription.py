"""One subscriber's view of the bus: a bounded buffer the bus pushes into without waiting.

Progress coalesces (the latest wins, in place). When anything else does not fit, the buffer is
emptied and replaced by one GAP: the consumer replays what it missed from the job_events table,
after the last event it handled, and then goes on with what arrives. Nothing is skipped in
silence, and a slow consumer costs the bus one bounded buffer.

A consumer waiting for its next delivery with nothing pending may offer an `express`: the bus
then hands it the delivery in the push itself, and only what the express declines is buffered
and wakes the consumer. A thousand subscribers of one job then cost one call each per event,
not a task wake-up and a trip through every layer above (service/live.py, gql/express.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from domain.events import JobEvent, JobEventKind
from models import Job

Match = Callable[[JobEvent], bool]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A committed change and the job exactly as that change left it. `first_sequence` is the
    oldest change of the job it stands for: progress coalesces, so one delivery may stand for
    several PROGRESS changes (first_sequence .. event.sequence)."""

    event: JobEvent
    job: Job
    first_sequence: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Deliveries were dropped (the subscriber fell behind, or the bus started late): replay
    from the table after the last event you handled before trusting the next deliveries."""


GAP = Gap()

Item = Delivery | Gap
# Takes a delivery at once (True), or declines it (False: it is buffered as usual).
Express = Callable[[Delivery], bool]


class _Slot:
    """A buffer position whose content a newer progress event may replace."""

    __slots__ = ("item",)

    def __init__(self, item: Item) -> None:
        self.item = item


class Subscription:
    """An async iterator of Delivery | Gap. Close it (or leave `async with`) when done: it
    unregisters at once. Iteration ends after close()."""

    def __init__(
        self, match: Match, buffer_size: int, unregister: Callable[[Subscription], None]
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, not {buffer_size}")
        self.buffer_size = buffer_size
        self._match = match
        self._unregister = unregister
        self._slots: deque[_Slot] = deque()
        self._last_slot_of_job: dict[str, _Slot] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.gaps = 0  # how many times deliveries were dropped for a GAP
        # Offered by the consumer; used only while it waits with nothing pending.
        self.express: Express | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return len(self._slots)

    def matches(self, event: JobEvent) -> bool:
        return not self._closed and self._match(event)

    def push(self, delivery: Delivery) -> None:
        """Never waits: coalesces, appends, or drops everything pending for a GAP."""
        if self._closed:
            return
        if (
            self.express is not None
            and not self._slots
            and self._waiting()
            and self._express(delivery)
        ):
            return
        event = delivery.event
        last = self._last_slot_of_job.get(event.job_id)
        if (
            event.kind is JobEventKind.PROGRESS
            and last is not None
            and isinstance(last.item, Delivery)
            and last.item.event.kind is JobEventKind.PROGRESS
        ):
            last.item = Delivery(event, delivery.job, last.item.first_sequence)
            return
        if len(self._slots) >= self.buffer_size:
            self.push_gap()
        slot = _Slot(delivery)
        self._slots.append(slot)
        self._last_slot_of_job[event.job_id] = slot
        self._wake()

    def push_gap(self) -> None:
        """Drops what is pending: the consumer replays it from the table."""
        if self._closed:
            return
        self._last_slot_of_job.clear()
        self._slots.clear()
        self._slots.append(_Slot(GAP))
        self.gaps += 1
        self._wake()

    def close(self) -> None:
        """Unregisters and frees the buffer; idempotent. A waiting consumer stops iterating."""
        if self._closed:
            return
        self._closed = True
        self.express = None
        self._slots.clear()
        self._last_slot_of_job.clear()
        self._unregister(self)
        self._wake()

    def _waiting(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def _express(self, delivery: Delivery) -> bool:
        express = self.express
        assert express is not None
        try:
            return express(delivery)
        except Exception:
            # One consumer's failure must not stop the bus: it gets its deliveries the usual
            # way from now on.
            logger.exception("A subscriber's express delivery failed; buffering instead")
            self.express = None
            return False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        while True:
            if self._slots:
                slot = self._slots.popleft()
                item = slot.item
                if isinstance(item, Delivery):
                    job_id = item.event.job_id
                    if self._last_slot_of_job.get(job_id) is slot:
                        del self._last_slot_of_job[job_id]
                return item
            if self._closed:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
