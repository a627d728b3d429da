"""Per-request context: who is asking (from the bearer token) and the request's DataLoaders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from domain.policy import Actor
from gql.defaults import DEFAULT_MAX_COST
from gql.errors import Unauthenticated
from models import Job, User
from service import history, job_logs, queries, users
from service.bus import EventBus

BEARER = "bearer "


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    user: User | None
    public_introspection: bool = False
    connection_params: Any = None
    bus: EventBus | None = None
    max_query_cost: int = DEFAULT_MAX_COST
    # Why connection_init was refused (the websocket's close reason).
    rejection: str | None = None

    # One DataLoader per request, made when first used (most requests use one or two, and an
    # idle websocket none): a page of jobs loads its owners in one query. The loaders of values
    # that change (queue positions, logs, throughput) batch but never cache: a websocket
    # context lives as long as its connection.
    @cached_property
    def users_by_id(self) -> DataLoader[str, User | None]:
        return DataLoader(load_fn=queries.users_by_ids)

    @cached_property
    def queue_positions(self) -> DataLoader[Job, int | None]:
        return DataLoader(load_fn=queries.queue_positions, cache=False, cache_key_fn=_job_key)

    @cached_property
    def render_specs(self) -> DataLoader[str, Any]:
        return DataLoader(load_fn=queries.render_specs, cache=False)

    @cached_property
    def logs(self) -> DataLoader[tuple[Job, int | None], str | None]:
        return DataLoader(load_fn=_load_logs, cache=False)

    @cached_property
    def owner_pages(self) -> DataLoader[OwnerPageKey, queries.Page]:
        """User.jobs of a list of users: one statement per distinct page asked for."""
        return DataLoader(load_fn=_load_owner_pages, cache=False)

    @cached_property
    def owner_counts(self) -> DataLoader[OwnerCountKey, int]:
        return DataLoader(load_fn=_load_owner_counts, cache=False)

    @cached_property
    def histories(self) -> DataLoader[tuple[Job, history.HistoryRequest], history.HistoryPage]:
        """Job.events of a list of jobs: one statement per distinct page size."""
        return DataLoader(load_fn=history.pages_of_histories, cache=False)

    @cached_property
    def finished_recently(self) -> DataLoader[datetime, int]:
        return DataLoader(load_fn=_load_finished_recently, cache=False)

    @property
    def actor(self) -> Actor | None:
        return None if self.user is None else users.actor_of(self.user)


# (who asks, whose jobs, which filter, which page)
OwnerPageKey = tuple[Actor, str, queries.JobQuery, queries.PageRequest]
OwnerCountKey = tuple[Actor, str, queries.JobQuery]


async def _load_owner_pages(keys: list[OwnerPageKey]) -> list[queries.Page | Exception]:
    return await _grouped_by_owner(keys, queries.pages_of_owners)


async def _load_owner_counts(keys: list[OwnerCountKey]) -> list[int | Exception]:
    return await _grouped_by_owner(keys, queries.counts_of_owners)


async def _grouped_by_owner(
    keys: Sequence[tuple[Any, ...]], load: Callable[..., Awaitable[list[Any]]]
) -> list[Any]:
    """Keys (actor, owner, *rest): one `load(actor, *rest, owners)` per distinct (actor,
    *rest), for all the owners asked with it."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for actor, owner, *rest in keys:
        groups.setdefault((actor, *rest), []).append(owner)
    found: dict[tuple[Any, ...], Any] = {}
    for (actor, *rest), owners in groups.items():
        unique = list(dict.fromkeys(owners))
        for owner, value in zip(unique, await load(actor, *rest, unique), strict=True):
            found[(actor, owner, *rest)] = value
    return [found[tuple(key)] for key in keys]


def _job_key(job: Job) -> str:
    return job.id


async def _load_logs(keys: list[tuple[Job, int | None]]) -> list[str | None]:
    """One statement per distinct tail asked for in the batch. One job may be asked as several
    changes left it (the events of a history): each reads its own log."""
    found: dict[tuple[str, int, int | None], str | None] = {}
    for tail in {tail for _, tail in keys}:
        jobs = list(
            {(job.id, job.sequence): job for job, wanted in keys if wanted == tail}.values()
        )
        for job, text in zip(jobs, await job_logs.read_logs(jobs, tail), strict=True):
            found[(job.id, job.sequence, tail)] = text
    return [found[(job.id, job.sequence, tail)] for job, tail in keys]


async def _load_finished_recently(keys: list[datetime]) -> list[int]:
    count = await queries.finished_recently(max(keys))
    return [count for _ in keys]


def bearer_token(header: str | None) -> str | None:
    if not header or not header.lower().startswith(BEARER):
        return None
    return header[len(BEARER) :].strip() or None


async def user_from_header(header: str | None) -> User | None:
    return await users.authenticate(bearer_token(header))


def require_actor(info: Info[Context, None]) -> Actor:
    actor = info.context.actor
    if actor is None:
        raise Unauthenticated()
    return actor
