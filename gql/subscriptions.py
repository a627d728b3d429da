"""Subscriptions: the live streams of service/live.py, in GraphQL's types and errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from domain.errors import DomainError
from domain.policy import Actor
from gql import express
from gql.context import require_actor
from gql.errors import extensions_of, message_of
from gql.events import JobEvent, event_of
from gql.types import JobStatus
from service import live


@strawberry.input(description="Narrows jobEvents; every given condition must hold.")
class JobEventFilter:
    status: list[JobStatus] | None = None
    user_id: strawberry.ID | None = strawberry.field(default=None, description="Admins only.")


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The job now (SNAPSHOT), then each change in commit order; completes after "
        "the change that makes it COMPLETED, FAILED or CANCELLED. With afterSequence (the "
        "sequence of the last event you handled), first every change since then from the "
        "job's history instead of the snapshot, with no gap and no duplicate (a SNAPSHOT when "
        "that part of the history is no longer kept)."
    )
    async def job_updated(
        self,
        info: Info,
        id: strawberry.ID,
        after_sequence: int | None = None,
    ) -> AsyncGenerator[JobEvent, None]:
        actor = _actor(info)
        updates = live.follow_job(
            info.context.bus, actor, str(id), after_sequence, express=express.lane(info)
        )
        async for event in _translated(updates):
            yield event

    @strawberry.subscription(
        description="Every change to the jobs you may see (all of them for an admin), in "
        "commit order. With `after` (the cursor of the last event you handled), first every "
        "change since that event."
    )
    async def job_events(
        self,
        info: Info,
        filter: JobEventFilter | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[JobEvent, None]:
        actor = _actor(info)
        wanted = filter or JobEventFilter()
        updates = live.follow_events(
            info.context.bus,
            actor,
            statuses=wanted.status,
            owner_id=None if wanted.user_id is None else str(wanted.user_id),
            after=after,
            express=express.lane(info),
        )
        async for event in _translated(updates):
            yield event


async def _translated(updates: AsyncGenerator[live.Update, None]) -> AsyncGenerator[JobEvent, None]:
    """The service's updates as GraphQL events; its refusals as coded GraphQL errors. `aclosing`
    runs the service generator's cleanup (unsubscribing) as soon as the client goes away."""
    async with contextlib.aclosing(updates):
        try:
            async for update in updates:
                yield event_of(update)
        except DomainError as error:
            raise GraphQLError(message_of(error), extensions=extensions_of(error)) from None


def _actor(info: Info) -> Actor:
    try:
        return require_actor(info)
    except DomainError as error:
        raise GraphQLError(message_of(error), extensions=extensions_of(error)) from None
