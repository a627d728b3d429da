"""The dispatcher's source of events: the job_events table, with the columns of each job that
never change kept in memory (a bounded LRU), so that an event for a followed job costs no read
besides the event's own."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from domain.events import JobEvent
from models import Job
from service import event_store

# Jobs whose submitted columns stay in memory: the ones being followed, with room to spare.
DEFAULT_CACHED_JOBS = 2_000


class TableSource:
    def __init__(self, cached_jobs: int = DEFAULT_CACHED_JOBS) -> None:
        self._cached_jobs = cached_jobs
        self._bases: OrderedDict[str, Job] = OrderedDict()

    async def latest_position(self) -> int:
        return await event_store.latest_position()

    async def events_after(self, position: int, limit: int) -> list[JobEvent]:
        return await event_store.events_after(position, limit)

    async def jobs_at(self, events: Sequence[JobEvent]) -> dict[int, Job]:
        missing = {event.job_id for event in events if event.job_id not in self._bases}
        if missing:
            for job_id, base in (await event_store.job_bases(missing)).items():
                self._bases[job_id] = base
        jobs: dict[int, Job] = {}
        for event in events:
            base = self._bases.get(event.job_id)
            if base is None or event.position is None:
                continue
            self._bases.move_to_end(event.job_id)
            jobs[event.position] = event_store.job_at(base, event)
        while len(self._bases) > self._cached_jobs:
            self._bases.popitem(last=False)
        return jobs
