"""The GraphQL shape of a job's changes: what the subscriptions send and Job.events lists."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from domain.events import Duty
from domain.events import JobEventKind as DomainJobEventKind
from gql.types import Job, JobStatus, PageInfo, User, visible_person
from service import history
from service.event_store import MEMO_PREFIX
from service.live import Update

# A live update's GraphQL event, kept on the job object every subscriber of the event receives.
_EVENT = f"{MEMO_PREFIX}_event"

JobEventKind = strawberry.enum(DomainJobEventKind, description="What happened to the job.")
JobEventDuty = strawberry.enum(
    Duty, name="JobEventDuty", description="The system duty that made a change."
)


@strawberry.type(description="A change to a job, or (SNAPSHOT) the job as it is now.")
class JobEvent:
    kind: JobEventKind
    job: Job = strawberry.field(
        description="The job exactly as this change left it (for a SNAPSHOT: as it is now)."
    )
    previous_status: JobStatus | None = strawberry.field(
        description="The status before the change, for STATUS_CHANGED; null otherwise."
    )
    at: datetime
    sequence: int = strawberry.field(
        description="The job's change counter after this change: 1, 2, 3, ... Resume "
        "jobUpdated with afterSequence set to the last one you handled. A gap means progress "
        "changes were merged for a slow client (the latest wins)."
    )
    cursor: str = strawberry.field(
        description="Where this event stands among every job's changes: resume jobEvents "
        "(`after`) or page Job.events from it."
    )
    duty: JobEventDuty | None = strawberry.field(
        description="The system duty that made the change (null when a user did)."
    )
    reason: str | None = strawberry.field(
        description="Why: the error, the cancellation reason, or the line the service wrote to "
        "the log when it moved the job itself (a stall, a retry); null for progress and logs."
    )
    actor_id: strawberry.Private[str | None]
    worker_id: strawberry.Private[str | None]
    # The job object a live delivery shares with every subscriber of its event: results of
    # the same document for the same caller are computed once on it (gql/fanout.py).
    shared_by: strawberry.Private[object | None] = None

    @strawberry.field(description="Who made the change, when the caller may see them.")
    async def actor(self, info: Info) -> User | None:
        return await _person(info, self.actor_id)

    @strawberry.field(
        description="The worker the change concerns (the one it released, for a requeue), "
        "when the caller may see them."
    )
    async def worker(self, info: Info) -> User | None:
        return await _person(info, self.worker_id)

    @classmethod
    def of(cls, update: Update) -> JobEvent:
        job, event = update.job, update.event
        if event is None:
            return cls(
                kind=DomainJobEventKind.SNAPSHOT,
                job=Job.of(job),
                previous_status=None,
                at=job.updated_at,
                sequence=job.sequence,
                cursor=update.cursor,
                duty=None,
                reason=None,
                actor_id=None,
                worker_id=job.worker_id,
            )
        changed = event.kind is DomainJobEventKind.STATUS_CHANGED
        return cls(
            shared_by=job if update.live else None,
            kind=event.kind,
            job=Job.of(job),
            previous_status=event.previous_status if changed else None,
            at=event.updated_at,
            sequence=event.sequence,
            cursor=update.cursor,
            duty=event.duty,
            reason=event.reason,
            actor_id=event.actor_id,
            worker_id=event.worker_id,
        )


def event_of(update: Update) -> JobEvent:
    """The GraphQL event of an update. A live update's job object is the one every subscriber
    of its event receives (service/bus/core.py): they all get one JobEvent, built once."""
    if not update.live:
        return JobEvent.of(update)
    memo = update.job.__dict__
    event = memo.get(_EVENT)
    if event is None:
        event = memo[_EVENT] = JobEvent.of(update)
    return event


async def _person(info: Info, user_id: str | None) -> User | None:
    if user_id is None:
        return None
    return visible_person(info, await info.context.users_by_id.load(user_id))


@strawberry.type
class JobEventEdge:
    cursor: str
    node: JobEvent


@strawberry.type(description="A page of a job's history, oldest change first.")
class JobEventConnection:
    edges: list[JobEventEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, page: history.HistoryPage) -> JobEventConnection:
        edges = [
            JobEventEdge(cursor=event.cursor, node=JobEvent.of(Update(job, event, event.cursor)))
            for event, job in page.events
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )
