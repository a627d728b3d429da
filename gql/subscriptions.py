"""Subscriptions: the live streams of service/live.py, in GraphQL's types and errors."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from domain.errors import DomainError
from domain.events import JobEventKind as DomainJobEventKind
from domain.policy import Actor
from gql.context import require_actor
from gql.errors import extensions_of, message_of
from gql.types import Job, JobStatus
from service import live
from service.bus import SubscriberOverflow

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
        async for update in _translated(live.follow_job(info.context.bus, actor, str(id))):
            yield update

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
        updates = live.follow_events(
            info.context.bus,
            actor,
            statuses=wanted.status,
            owner_id=None if wanted.user_id is None else str(wanted.user_id),
        )
        async for update in _translated(updates):
            yield update


async def _translated(updates: AsyncGenerator[live.Update, None]) -> AsyncGenerator[JobEvent, None]:
    """The service's updates as GraphQL events; its refusals as coded GraphQL errors. `aclosing`
    runs the service generator's cleanup (unsubscribing) as soon as the client goes away."""
    async with contextlib.aclosing(updates):
        try:
            async for update in updates:
                yield _event_of(update)
        except DomainError as error:
            raise GraphQLError(message_of(error), extensions=extensions_of(error)) from None
        except SubscriberOverflow as overflow:
            raise GraphQLError(str(overflow), extensions={"code": "SUBSCRIBER_OVERFLOW"}) from None


def _actor(info: Info) -> Actor:
    try:
        return require_actor(info)
    except DomainError as error:
        raise GraphQLError(message_of(error), extensions=extensions_of(error)) from None


def _event_of(update: live.Update) -> JobEvent:
    job, event = update.job, update.event
    if event is None:
        return JobEvent(
            kind=DomainJobEventKind.SNAPSHOT,
            job=Job.of(job),
            previous_status=None,
            at=job.updated_at,
            sequence=job.sequence,
        )
    changed = event.kind is DomainJobEventKind.STATUS_CHANGED
    return JobEvent(
        kind=event.kind,
        job=dataclasses.replace(
            Job.of(job), status=event.status, progress=event.progress, updated_at=event.updated_at
        ),
        previous_status=event.previous_status if changed else None,
        at=event.updated_at,
        sequence=event.sequence,
    )
