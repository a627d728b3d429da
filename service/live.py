"""Following jobs live: what a subscriber is sent, in which order, and when its stream ends.

The wire formats (GraphQL subscriptions now) only translate what these generators yield.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

from domain import lifecycle, policy
from domain.errors import Forbidden, NotFound
from domain.events import JobEvent
from domain.policy import Actor
from domain.status import JobStatus
from models import Job
from service import queries
from service.bus import Delivery, EventBus, Resync
from service.bus.core import DEFAULT_BUFFER_SIZE

# Events a subscriber may fall behind by before it is told so and closed (progress coalesces).
SUBSCRIBER_BUFFER = DEFAULT_BUFFER_SIZE


@dataclass(frozen=True)
class Update:
    """The job as it is now (`event` None: a snapshot), or one committed change to it. For a
    change, `job` is the row as read when the event was dispatched, possibly newer than the
    event; the event's own status and progress are the ones of that change."""

    job: Job
    event: JobEvent | None = None


async def follow_job(bus: EventBus, actor: Actor, job_id: str) -> AsyncIterator[Update]:
    """A snapshot, then every change in commit order; ends after the change that makes the job
    terminal (at once for a terminal job). NOT_FOUND for a job the actor may not see.

    The subscription is made before the snapshot is read, so no change committed in between is
    missed; changes the snapshot already holds (sequence not newer) are skipped. After a Resync
    (events were lost) a fresh snapshot is sent. Visibility is checked again on every delivery:
    a job the actor may no longer see ends the stream with NOT_FOUND."""
    subscription = bus.subscribe(
        lambda event: event.job_id == job_id, buffer_size=SUBSCRIBER_BUFFER
    )
    try:
        resync = True
        seen = 0
        while True:
            if resync:
                job = await queries.job_for(actor, job_id)
                if job is None:
                    raise NotFound("Job", job_id)
                yield Update(job)
                seen = job.sequence
                if lifecycle.is_terminal(JobStatus(job.status)):
                    return
            item = await anext(subscription, None)
            if item is None:  # the bus stopped
                return
            resync = isinstance(item, Resync)
            if resync or item.job is None or item.event.sequence <= seen:
                continue
            event = item.event
            if not policy.can_see_job(actor, event.user_id, event.worker_id, event.status):
                raise NotFound("Job", job_id)  # e.g. a worker whose job went to another
            seen = item.event.sequence
            yield Update(item.job, item.event)
            if lifecycle.is_terminal(item.event.status):
                return
    finally:
        subscription.close()


async def follow_events(
    bus: EventBus,
    actor: Actor,
    *,
    statuses: Collection[JobStatus] | None = None,
    owner_id: str | None = None,
) -> AsyncIterator[Update]:
    """Every change to the jobs the actor may see, optionally only in `statuses` or of one
    owner (their own, or anyone's for an admin). Runs until the subscriber stops it."""
    if owner_id is not None and not policy.can_list_jobs_of(actor, owner_id):
        raise Forbidden("Only admins follow another user's jobs.")
    wanted = None if statuses is None else frozenset(statuses)

    def match(event: JobEvent) -> bool:
        return (
            policy.can_see_job(actor, event.user_id, event.worker_id, event.status)
            and (wanted is None or event.status in wanted)
            and (owner_id is None or event.user_id == owner_id)
        )

    subscription = bus.subscribe(match, buffer_size=SUBSCRIBER_BUFFER)
    try:
        async for item in subscription:
            if isinstance(item, Delivery) and item.job is not None:
                yield Update(item.job, item.event)
    finally:
        subscription.close()
