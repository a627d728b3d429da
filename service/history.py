"""A job's history as pages of its recorded events (keyset by sequence, oldest first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain.errors import BadUserInput
from domain.events import Cursor, JobEvent
from models import Job
from service import event_store
from service.queries import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE


@dataclass(frozen=True)
class HistoryRequest:
    first: int | None = None
    after: str | None = None

    def checked(self) -> tuple[int, int]:
        """(page size, sequence to start after); BAD_USER_INPUT naming the argument."""
        if self.first is not None and self.first < 0:
            raise BadUserInput.single("first", "must not be negative")
        size = min(DEFAULT_PAGE_SIZE if self.first is None else self.first, MAX_PAGE_SIZE)
        after = 0 if self.after is None else Cursor.decode(self.after, "after").sequence
        return size, after


@dataclass(frozen=True)
class HistoryPage:
    """Events, each with the job as its change left it."""

    events: list[tuple[JobEvent, Job]]
    has_next_page: bool
    has_previous_page: bool


async def pages_of_histories(
    requests: Sequence[tuple[Job, HistoryRequest]],
) -> list[HistoryPage | BadUserInput]:
    """The page each (job, request) asks for (or the refusal of its arguments); one statement
    per distinct page size. The jobs are ones the caller may see (they come from a
    visibility-checked read)."""
    refusals: dict[int, BadUserInput] = {}
    checked: list[tuple[Job, int, int]] = []
    for index, (job, request) in enumerate(requests):
        try:
            checked.append((job, *request.checked()))
        except BadUserInput as refusal:
            refusals[index] = refusal
    pages: dict[tuple[str, int, int], HistoryPage] = {}
    for size in {size for _, size, _ in checked}:
        asked = [(job, after) for job, wanted, after in checked if wanted == size]
        found = await event_store.histories([(job.id, after) for job, after in asked], size + 1)
        for job, after in asked:
            events = found[(job.id, after)]
            pages[(job.id, size, after)] = HistoryPage(
                events=[(event, event_store.job_at(job, event)) for event in events[:size]],
                has_next_page=len(events) > size,
                has_previous_page=after > 0,
            )
    answers = iter(pages[(job.id, size, after)] for job, size, after in checked)
    return [refusals.get(index) or next(answers) for index in range(len(requests))]
