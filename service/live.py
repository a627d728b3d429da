"""Following jobs live: what a subscriber is sent, in which order, and when its stream ends.

Both streams subscribe to the bus first and only then read the table, so every change is either
in what they read or arrives afterwards (or both: duplicates are dropped by sequence or
position). Whatever the bus could not deliver (a subscriber that fell behind, a delivery that
skips a change) is replayed from the job_events table. Every update carries the job exactly as
its change left it. The wire formats (GraphQL subscriptions now) only translate what these
generators yield.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from domain import lifecycle, policy
from domain.errors import BadUserInput, Forbidden, NotFound
from domain.events import Cursor, JobEvent
from domain.policy import Actor
from domain.status import JobStatus, Role
from models import Job
from service import clock, event_store, queries, settings
from service.bus import EventBus, Gap
from service.bus.core import DEFAULT_BUFFER_SIZE
from service.bus.subscription import Delivery

# Changes a subscriber may fall behind by before its buffer is dropped and replayed from the
# table (progress coalesces).
SUBSCRIBER_BUFFER = DEFAULT_BUFFER_SIZE
# Events one replay read hands over.
REPLAY_BATCH = 500


@dataclass(frozen=True)
class Update:
    """A change (`event`) and the job exactly as that change left it; or, with `event` None, a
    SNAPSHOT: the job as it is now. `cursor` is where a client resumes jobEvents from."""

    job: Job
    event: JobEvent | None
    cursor: str
    # From the bus: `job` is the one object every subscriber of this event receives.
    live: bool = False


async def follow_job(
    bus: EventBus,
    actor: Actor,
    job_id: str,
    after_sequence: int | None = None,
    express: Callable[[Update], bool] | None = None,
) -> AsyncIterator[Update]:
    """Without `after_sequence`: a snapshot, then every change in order. With it: every change
    after that sequence from the job's history, then every new one, with no gap and no
    duplicate; a snapshot instead when that part of the history is no longer kept. Ends after
    the change that makes the job terminal (at once for a terminal job with nothing to
    replay); a replay runs through the end of an earlier attempt that was retried. NOT_FOUND
    for a job the actor may not see, also once it goes out of sight.

    `express(update)` (optional) sends an update straight to the subscriber, answering whether
    it did: while this generator waits for the next change with nothing pending, a change
    that follows the last one sent is offered to it there and then, instead of being yielded
    (the first change, a change that ends the stream and everything replayed are always
    yielded)."""
    if after_sequence is not None and after_sequence < 0:
        raise BadUserInput.single("afterSequence", "must not be negative")
    subscription = bus.subscribe(_every_event, job_id=job_id, buffer_size=SUBSCRIBER_BUFFER)
    sent = _Sent()
    try:
        snapshot = await _snapshot(actor, job_id)
        seen_at = snapshot.job.sequence  # the actor may see the job as this change left it
        if after_sequence is None:
            yield snapshot
            sent.last = seen_at
            if _ends(snapshot):
                return
            replay = False
        else:
            if after_sequence > seen_at:
                raise BadUserInput.single(
                    "afterSequence", f"is beyond the job's last change ({seen_at})"
                )
            sent.last = after_sequence
            if sent.last == seen_at and _ends(snapshot):
                return
            replay = True
        while True:
            if replay:
                replay = False
                replayed = _replay_job(actor, job_id, sent.last, seen_at)
                final: Update | None = None
                async with contextlib.aclosing(replayed):
                    async for final in replayed:
                        yield final
                        sent.last = final.job.sequence
                # Only the job's last change ends it: an earlier attempt that ended (then was
                # retried) is history the client catches up on.
                if final is not None and _ends(final):
                    return
            if express is not None:
                subscription.express = partial(_take_express, express, actor, sent)
            item = await anext(subscription, None)
            subscription.express = None
            if item is None:  # the bus stopped
                return
            if isinstance(item, Gap):
                replay = True
                continue
            step = _live_step(actor, item, sent.last)
            if step is _SKIP:
                continue
            if step is _REPLAY:
                replay = True
                continue
            assert isinstance(step, Update)
            yield step
            sent.last = item.event.sequence
            if _ends(step):
                return
    finally:
        subscription.close()


class _Sent:
    """The last change sent to a follower, express ones included: its sequence (follow_job)
    or its position (follow_events)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = -1


_SKIP = object()  # a change the follower already has
_REPLAY = object()  # a change past one that never reached the follower: replay from the table


def _live_step(actor: Actor, item: Delivery, last: int) -> Update | object:
    """What a job's follower whose last change is `last` does with a live delivery: _SKIP,
    _REPLAY, or send the update. NOT_FOUND once the job is out of the actor's sight."""
    if item.event.sequence <= last:
        return _SKIP
    if item.first_sequence > last + 1:
        return _REPLAY
    _check_visible(actor, item.event)
    return Update(item.job, item.event, item.event.cursor, live=True)


def _take_express(
    express: Callable[[Update], bool], actor: Actor, sent: _Sent, item: Delivery
) -> bool:
    """A delivery sent at once when it is simply the next change and not the last one; any
    other case (a duplicate, a gap, out of sight, the end) is declined, and follow_job handles
    it as usual."""
    try:
        step = _live_step(actor, item, sent.last)
    except NotFound:
        return False
    if not isinstance(step, Update) or _ends(step) or not express(step):
        return False
    sent.last = item.event.sequence
    return True


def _take_event_express(express: Callable[[Update], bool], sent: _Sent, item: Delivery) -> bool:
    """A change after the last one sent, sent at once (the bus routed it by the follower's
    match); a repeat is declined and dropped as usual."""
    position = _position(item.event)
    if position <= sent.last:
        return False
    if not express(Update(item.job, item.event, item.event.cursor, live=True)):
        return False
    sent.last = position
    return True


async def follow_events(
    bus: EventBus,
    actor: Actor,
    *,
    statuses: Collection[JobStatus] | None = None,
    owner_id: str | None = None,
    after: str | None = None,
    express: Callable[[Update], bool] | None = None,
) -> AsyncIterator[Update]:
    """Every change to the jobs the actor may see, optionally only in `statuses` or of one
    owner (their own, or anyone's for an admin), in commit order. With `after` (a cursor an
    event gave out), first every such change since that event. Runs until the subscriber stops
    it. `express` as for follow_job: a live change is offered to it there and then while this
    generator waits with nothing pending."""
    if owner_id is not None and not policy.can_list_jobs_of(actor, owner_id):
        raise Forbidden("Only admins follow another user's jobs.")
    cursor = None if after is None else _fresh_cursor(after)
    wanted = None if statuses is None else frozenset(JobStatus(status) for status in statuses)
    if owner_id is None and actor.role is Role.USER:
        owner_id = actor.id  # a user sees only their own jobs: route by owner

    def match(event: JobEvent) -> bool:
        return (
            policy.can_see_job(actor, event.user_id, event.worker_id, event.status)
            and (wanted is None or event.status in wanted)
            and (owner_id is None or event.user_id == owner_id)
        )

    subscription = bus.subscribe(match, owner_id=owner_id, buffer_size=SUBSCRIBER_BUFFER)
    sent = _Sent()
    try:
        latest = await event_store.latest_position()
        if cursor is not None and cursor.position > latest:
            raise BadUserInput.single(
                "after", "is beyond the latest event: it comes from another database"
            )
        sent.last = cursor.position if cursor else latest
        replay = cursor is not None
        held_by = actor.id if actor.role is Role.WORKER else None
        while True:
            if replay:
                replay = False
                replayed = _replay_events(match, sent.last, owner_id, wanted, held_by)
                async with contextlib.aclosing(replayed):
                    async for update in replayed:
                        yield update
                        sent.last = _position(update.event)
            if express is not None:
                subscription.express = partial(_take_event_express, express, sent)
            item = await anext(subscription, None)
            subscription.express = None
            if item is None:
                return
            if isinstance(item, Gap):
                replay = True
                continue
            if _position(item.event) <= sent.last:
                continue
            yield Update(item.job, item.event, item.event.cursor, live=True)
            sent.last = _position(item.event)
    finally:
        subscription.close()


async def _snapshot(actor: Actor, job_id: str) -> Update:
    """The job as it is now. Its cursor's position is read before the row, so resuming from it
    can repeat a change the snapshot holds but never miss one."""
    position = await event_store.latest_position()
    job = await queries.job_for(actor, job_id)
    if job is None:
        raise NotFound("Job", job_id)
    return Update(job, None, Cursor(position, job.sequence, clock.now()).encode())


async def _replay_job(
    actor: Actor, job_id: str, after_sequence: int, seen_at: int
) -> AsyncIterator[Update]:
    """The job's changes after `after_sequence` from its history, in order. Changes past
    `seen_at` are checked against the visibility rule like live ones. When the history no
    longer holds the next change (pruned, or older than the history), a snapshot instead."""
    base: Job | None = None
    while True:
        events = await event_store.job_events(job_id, after_sequence, REPLAY_BATCH)
        if not events and after_sequence >= seen_at:
            return  # nothing was missed
        if not events or events[0].sequence != after_sequence + 1:
            yield await _snapshot(actor, job_id)
            return
        if base is None:
            base = (await event_store.job_bases([job_id])).get(job_id)
            if base is None:
                raise NotFound("Job", job_id)
        for event in events:
            if event.sequence > seen_at:
                _check_visible(actor, event)
            yield Update(event_store.job_at(base, event), event, event.cursor)
        after_sequence = events[-1].sequence
        if len(events) < REPLAY_BATCH:
            return


async def _replay_events(
    match: Callable[[JobEvent], bool],
    after: int,
    owner_id: str | None,
    statuses: frozenset[JobStatus] | None,
    held_by: str | None,
) -> AsyncIterator[Update]:
    """The changes after position `after` that `match` accepts, in commit order."""
    while True:
        events = await event_store.events_after(
            after,
            REPLAY_BATCH,
            owner_id=owner_id,
            statuses=None if statuses is None else sorted(statuses),
            held_by_or_queued=held_by,
        )
        if not events:
            return
        chosen = [event for event in events if match(event)]
        bases = await event_store.job_bases(event.job_id for event in chosen)
        for event in chosen:
            base = bases.get(event.job_id)
            if base is not None:
                yield Update(event_store.job_at(base, event), event, event.cursor)
        after = _position(events[-1])
        if len(events) < REPLAY_BATCH:
            return


def _fresh_cursor(after: str) -> Cursor:
    """A jobEvents cursor whose events are all still kept."""
    cursor = Cursor.decode(after, "after")
    days = settings.current().event_retention_days
    if days and cursor.at < clock.now() - timedelta(days=days):
        raise BadUserInput.single(
            "after",
            f"is older than the event history kept ({days} days): some of the events after "
            "it may be gone; read the jobs again and subscribe without it",
        )
    return cursor


def _check_visible(actor: Actor, event: JobEvent) -> None:
    if not policy.can_see_job(actor, event.user_id, event.worker_id, event.status):
        raise NotFound("Job", event.job_id)  # e.g. a worker whose job went to another


def _ends(update: Update) -> bool:
    return lifecycle.is_terminal(JobStatus(update.job.status))


def _position(event: JobEvent | None) -> int:
    assert event is not None and event.position is not None
    return event.position


def _every_event(event: JobEvent) -> bool:
    return True
