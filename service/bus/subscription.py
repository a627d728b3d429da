"""One subscriber's view of the bus: a bounded buffer the bus pushes into without waiting.

Progress coalesces (the latest wins, in place); anything else that does not fit ends the
subscription with SubscriberOverflow instead of being dropped silently.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from domain.events import JobEvent, JobEventKind
from models import Job

Match = Callable[[JobEvent], bool]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A committed change and the job row as the bus read it once the change was dispatched
    (at least as new as the event; None when the row is gone or could not be read)."""

    event: JobEvent
    job: Job | None


@dataclass(frozen=True, slots=True)
class Resync:
    """Events may have been lost (the bus lost its connection, or fell behind): re-read the
    state you show (e.g. send a fresh SNAPSHOT) before trusting the next deliveries."""


RESYNC = Resync()

Item = Delivery | Resync


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind; its subscription is closed."""

    def __init__(self, buffer_size: int) -> None:
        super().__init__(
            f"Subscriber fell more than {buffer_size} events behind and was dropped; "
            "subscribe again and re-read the current state."
        )
        self.buffer_size = buffer_size


class _Slot:
    """A buffer position whose content a newer progress event may replace."""

    __slots__ = ("item",)

    def __init__(self, item: Item) -> None:
        self.item = item


class Subscription:
    """An async iterator of Delivery | Resync. Close it (or leave `async with`) when done:
    it unregisters at once. Iteration ends after close(); it raises SubscriberOverflow once
    the subscriber fell more than `buffer_size` items behind."""

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
        self._overflowed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def pending(self) -> int:
        return len(self._slots)

    def matches(self, event: JobEvent) -> bool:
        return not self._closed and self._match(event)

    def push(self, delivery: Delivery) -> None:
        """Never waits: coalesces, appends, or overflows."""
        if self._closed:
            return
        event = delivery.event
        last = self._last_slot_of_job.get(event.job_id)
        if (
            event.kind is JobEventKind.PROGRESS
            and last is not None
            and isinstance(last.item, Delivery)
            and last.item.event.kind is JobEventKind.PROGRESS
        ):
            last.item = delivery
            return
        if len(self._slots) >= self.buffer_size:
            self._overflow()
            return
        slot = _Slot(delivery)
        self._slots.append(slot)
        self._last_slot_of_job[event.job_id] = slot
        self._wake()

    def push_resync(self) -> None:
        """A Resync supersedes whatever is pending, so it always fits: a full buffer is
        replaced by it (the consumer re-reads the state anyway)."""
        if self._closed:
            return
        # Nothing coalesces across a Resync: later progress must stay after it.
        self._last_slot_of_job.clear()
        if self._slots and isinstance(self._slots[-1].item, Resync):
            return
        if len(self._slots) >= self.buffer_size:
            self._slots.clear()
        self._slots.append(_Slot(RESYNC))
        self._wake()

    def close(self) -> None:
        """Unregisters and frees the buffer; idempotent. A waiting consumer stops iterating."""
        if self._closed:
            return
        self._closed = True
        self._slots.clear()
        self._last_slot_of_job.clear()
        self._unregister(self)
        self._wake()

    def _overflow(self) -> None:
        self._overflowed = True
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        while True:
            if self._overflowed:
                raise SubscriberOverflow(self.buffer_size)
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
