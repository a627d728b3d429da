"""A page of jobs reads the per-job fields it was asked for (queue positions, owners) in one
batch before its nodes resolve, so that each node answers them at once. Otherwise each of the
page's nodes awaits a DataLoader for each of them: on a page of fifty, a hundred coroutines,
tasks and futures, the largest cost of a page after the fields themselves.

Only jobs read for one request are preloaded; an event's job, which every subscriber resolves,
shares its fields through `gql.types.shared` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from domain import policy
from domain.status import JobStatus
from gql.context import require_actor
from models import Job
from service.event_store import MEMO_PREFIX

PRELOADED = f"{MEMO_PREFIX}_preloaded"
# A field value that was not preloaded (None is a value: no owner, no queue position).
MISSING: Any = object()
QUEUE = "queue"
QUEUE_FIELDS = frozenset({"queuePosition", "estimatedStartAt"})


def owner_key(user_id: str) -> Hashable:
    return ("user", user_id)


def preloaded(job: Job, key: Hashable) -> Any:
    """The value preloaded for this job under `key`, or MISSING."""
    return job.__dict__.get(PRELOADED, {}).get(key, MISSING)


async def preload(info: Info, jobs: Sequence[Job]) -> None:
    """Reads, for the whole page at once, the per-job fields the connection's nodes ask for."""
    if not jobs:
        return
    wanted = wanted_on_nodes(info)
    context = info.context
    queued = [job for job in jobs if job.status == JobStatus.QUEUED]
    positions = (
        context.queue_positions.load_many(queued) if queued and wanted & QUEUE_FIELDS else None
    )
    owner_ids = sorted({job.user_id for job in jobs})
    owners = (
        context.users_by_id.load_many(owner_ids)
        if "user" in wanted and policy.can_see_owner(require_actor(info))
        else None
    )
    if positions is None and owners is None:
        return
    found_positions, found_owners = await asyncio.gather(_or_none(positions), _or_none(owners))
    people = dict(zip(owner_ids, found_owners, strict=True)) if found_owners is not None else {}
    position_of = (
        {job.id: position for job, position in zip(queued, found_positions, strict=True)}
        if found_positions is not None
        else {}
    )
    for job in jobs:
        memo: dict[Hashable, Any] = job.__dict__.setdefault(PRELOADED, {})
        if found_positions is not None:
            memo[QUEUE] = position_of.get(job.id)
        if found_owners is not None:
            memo[owner_key(job.user_id)] = people[job.user_id]


async def _or_none(pending: Any) -> Any:
    return None if pending is None else await pending


def wanted_on_nodes(info: Info) -> set[str]:
    """The names of the fields asked under `edges { node { ... } }` of the field being resolved,
    through fragments."""
    names: set[str] = set()
    for connection in _fields(info.selected_fields):
        for edges in _fields(connection.selections):
            if edges.name != "edges":
                continue
            for node in _fields(edges.selections):
                if node.name == "node":
                    names.update(field.name for field in _fields(node.selections))
    return names


def _fields(selections: Sequence[Selection]) -> Iterator[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        elif isinstance(selection, FragmentSpread | InlineFragment):
            yield from _fields(selection.selections)
