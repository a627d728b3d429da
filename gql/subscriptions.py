"""Subscriptions: every status and progress change, live, from the event bus.

`jobUpdated` subscribes to the bus before it reads the snapshot, so nothing committed in between
is missed, and drops deliveries the snapshot already contains (sequence not newer).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from domain import lifecycle, policy
from domain.errors import DomainError, Forbidden, NotFound
from domain.events import JobEvent as DomainJobEvent
from domain.events import JobEventKind as DomainJobEventKind
from domain.policy import Actor
from domain.status import JobStatus as DomainJobStatus
from gql.context import require_actor
from gql.errors import extensions_of, message_of
from gql.types import Job, JobStatus
from models import Job as JobModel
from service import queries
from service.bus import Delivery, EventBus, Resync, SubscriberOverflow

logger = logging.getLogger(__name__)

# Events a subscriber may fall behind by before it is told so and closed (progress coalesces).
SUBSCRIBER_BUFFER = 256

JobEventKind = strawberry.enum(DomainJobEventKind, description="What happened to the job.")


@strawberry.type(description="A change to a job, or (SNAPSHOT) the job as it is now.")
class JobEvent:
    kind: JobEventKind
    job: Job
    previous_status: JobStatus | None = strawberry.field(
        description="The status before the change, for STATUS_CHANGED; null otherwise."
    )
    at: datetime
    sequence: int = strawberry.field(
        description="Increases with every change to the job: a gap means changes were skipped "
        "(progress coalesces for slow clients)."
    )


@strawberry.input(description="Narrows jobEvents; every given condition must hold.")
class JobEventFilter:
    status: list[JobStatus] | None = None
    user_id: strawberry.ID | None = strawberry.field(default=None, description="Admins only.")


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The job now (SNAPSHOT), then each change in commit order; completes after "
        "the change that makes it COMPLETED, FAILED or CANCELLED."
    )
    async def job_updated(
        self,
        info: Info,
        id: strawberry.ID,
    ) -> AsyncGenerator[JobEvent, None]:
        actor = _actor(info)
        job_id = str(id)
        subscription = _bus(info).subscribe(
            lambda event: event.job_id == job_id, buffer_size=SUBSCRIBER_BUFFER
        )
        try:
            snapshot = await _snapshot(actor, job_id)
            yield snapshot
            seen = snapshot.sequence
            if lifecycle.is_terminal(DomainJobStatus(snapshot.job.status)):
                return
            async for item in _items(subscription):
                if isinstance(item, Resync):
                    snapshot = await _snapshot(actor, job_id)
                    yield snapshot
                    seen = snapshot.sequence
                    if lifecycle.is_terminal(DomainJobStatus(snapshot.job.status)):
                        return
                    continue
                if item.event.sequence <= seen or item.job is None:
                    continue
                seen = item.event.sequence
                yield _change(item)
                if lifecycle.is_terminal(item.event.status):
                    return
        finally:
            subscription.close()

    @strawberry.subscription(
        description="Every change to the jobs you may see (all of them for an admin)."
    )
    async def job_events(
        self,
        info: Info,
        filter: JobEventFilter | None = None,
    ) -> AsyncGenerator[JobEvent, None]:
        actor = _actor(info)
        wanted = filter or JobEventFilter()
        statuses = None if wanted.status is None else frozenset(wanted.status)
        owner = None if wanted.user_id is None else str(wanted.user_id)
        if owner is not None and not policy.can_list_jobs_of(actor, owner):
            raise _graphql_error(Forbidden("Only admins follow another user's jobs."))

        def match(event: DomainJobEvent) -> bool:
            return (
                policy.can_see_job(actor, event.user_id, event.worker_id)
                and (statuses is None or event.status in statuses)
                and (owner is None or event.user_id == owner)
            )

        subscription = _bus(info).subscribe(match, buffer_size=SUBSCRIBER_BUFFER)
        try:
            async for item in _items(subscription):
                if isinstance(item, Delivery) and item.job is not None:
                    yield _change(item)
        finally:
            subscription.close()


async def _items(subscription: object) -> AsyncGenerator[Delivery | Resync, None]:
    try:
        async for item in subscription:  # type: ignore[attr-defined]
            yield item
    except SubscriberOverflow as overflow:
        raise GraphQLError(str(overflow), extensions={"code": "SUBSCRIBER_OVERFLOW"}) from None


def _actor(info: Info) -> Actor:
    try:
        return require_actor(info)
    except DomainError as error:
        raise _graphql_error(error) from None


def _bus(info: Info) -> EventBus:
    return info.context.bus


async def _snapshot(actor: Actor, job_id: str) -> JobEvent:
    job = await queries.job_for(actor, job_id)
    if job is None:
        raise _graphql_error(NotFound("Job", job_id))
    return JobEvent(
        kind=DomainJobEventKind.SNAPSHOT,
        job=Job.of(job),
        previous_status=None,
        at=job.updated_at,
        sequence=job.sequence,
    )


def _change(delivery: Delivery) -> JobEvent:
    """The row was read when the event was dispatched and may be newer than the event: status
    and progress are taken from the event itself, as they were at that change."""
    event = delivery.event
    row: JobModel = delivery.job  # type: ignore[assignment]
    job = dataclasses.replace(
        Job.of(row), status=event.status, progress=event.progress, updated_at=event.updated_at
    )
    return JobEvent(
        kind=event.kind,
        job=job,
        previous_status=(
            event.previous_status if event.kind is DomainJobEventKind.STATUS_CHANGED else None
        ),
        at=event.updated_at,
        sequence=event.sequence,
    )


def _graphql_error(error: DomainError) -> GraphQLError:
    return GraphQLError(message_of(error), extensions=extensions_of(error))
