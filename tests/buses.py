"""What the tests of the live path share: an event source they can make fail, and a started bus
installed as the use cases' publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from domain.events import JobEvent
from models import Job
from service.bus import EventBus, TableSource, create_bus
from service.events import set_publisher


class FlakySource(TableSource):
    """The job_events table, counting the reads of job rows and failing the next
    `failures_to_come` reads of events."""

    def __init__(self) -> None:
        super().__init__()
        self.job_reads: list[list[str]] = []
        self.failures_to_come = 0

    async def events_after(self, position: int, limit: int) -> list[JobEvent]:
        if self.failures_to_come:
            self.failures_to_come -= 1
            raise ConnectionError("the database went away (made up by the test)")
        return await super().events_after(position, limit)

    async def jobs_at(self, events: Sequence[JobEvent]) -> dict[int, Job]:
        missing = sorted({event.job_id for event in events} - set(self._bases))
        if missing:
            self.job_reads.append(missing)
        return await super().jobs_at(events)


@asynccontextmanager
async def started_bus(database_url: str, source: FlakySource) -> AsyncIterator[EventBus]:
    """The bus of the database's kind on `source`, started and publishing the use cases'
    events, for as long as the block runs."""
    bus = create_bus(database_url, source)
    await bus.start()
    previous = set_publisher(bus)
    try:
        yield bus
    finally:
        set_publisher(previous)
        await bus.stop()
