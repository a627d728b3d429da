"""The GraphQL object types, fed by the Tortoise models."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from domain import estimates, policy
from domain.lifecycle import allowed_transitions
from domain.status import JobStage as DomainJobStage
from domain.status import JobStatus as DomainJobStatus
from domain.status import Role as DomainRole
from gql.context import require_actor
from gql.preload import MISSING, QUEUE, owner_key, preload, preloaded
from models import Job as JobModel
from models import User as UserModel
from service import clock, event_store, history, job_logs, job_store, queries

if TYPE_CHECKING:
    from gql.events import JobEventConnection

JobStatus = strawberry.enum(DomainJobStatus, description="Where a job stands in its lifecycle.")
JobStage = strawberry.enum(
    DomainJobStage,
    description="What a RENDERING job is doing, as its worker reports it (Nexrender's render:* "
    "states map onto these).",
)
Role = strawberry.enum(
    DomainRole, description="ADMIN: everything; USER: own jobs; WORKER: renders."
)


@strawberry.enum(description="The order of a job list.")
class JobOrder(Enum):
    NEWEST_FIRST = "NEWEST_FIRST"
    OLDEST_FIRST = "OLDEST_FIRST"


@strawberry.type(description="A render job.")
class Job:
    id: strawberry.ID
    project_name: str
    output_name: str
    template_path: str
    data_path: str
    output_path: str
    status: JobStatus
    stage: JobStage | None = strawberry.field(
        description="While RENDERING: what the job is doing, as its worker last reported; "
        "null otherwise."
    )
    priority: int = strawberry.field(description="1..10; a higher number is more urgent.")
    progress: int = strawberry.field(description="0..100; 100 exactly when COMPLETED.")
    nexrender_job_id: str | None
    error_message: str | None
    queued_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    estimated_time: int | None = strawberry.field(description="Seconds.")
    actual_time: int | None = strawberry.field(description="Seconds from start to end.")
    auto_cancel_at: datetime | None
    cancelled_reason: str | None
    created_at: datetime
    updated_at: datetime
    attempts: int = strawberry.field(
        description="How many times the job has been claimed (a hand-back gives one back)."
    )
    lease: int = strawberry.field(
        description="Bumped by every claim: workers send it back with their reports (the "
        "`lease` argument) so that a report from an older claim is refused."
    )
    max_attempts: int = strawberry.field(
        description="Claims allowed before a stalled or failing job is FAILED (1..10)."
    )
    heartbeat_at: datetime | None = strawberry.field(
        description="When the worker holding the job last reported; null unless RENDERING."
    )
    not_before: datetime | None = strawberry.field(
        description="After a retryable failure: the job is not handed out before this time."
    )
    sequence: int = strawberry.field(
        description="The sequence of the change that left the job as shown (1, 2, 3, ... per "
        "job): of two views of a job, the higher sequence is the newer; "
        "`jobUpdated(id, afterSequence)` resumes right after it."
    )
    model: strawberry.Private[JobModel]

    @classmethod
    def of(cls, job: JobModel) -> Job:
        return cls(
            id=strawberry.ID(job.id),
            project_name=job.project_name,
            output_name=job.output_name,
            template_path=job.template_path,
            data_path=job.data_path,
            output_path=job.output_path,
            status=DomainJobStatus(job.status),
            stage=_stage_of(job),
            priority=job.priority,
            progress=job.progress,
            nexrender_job_id=job.nexrender_job_id,
            error_message=job.error_message,
            queued_at=job.queued_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            estimated_time=job.estimated_time,
            actual_time=job.actual_time,
            auto_cancel_at=job.auto_cancel_at,
            cancelled_reason=job.cancelled_reason,
            created_at=job.created_at,
            updated_at=job.updated_at,
            attempts=job.attempts,
            lease=job.lease,
            max_attempts=job.max_attempts,
            heartbeat_at=job.heartbeat_at,
            not_before=job.not_before,
            sequence=job.sequence,
            model=job,
        )

    @strawberry.field(description="A Nexrender job (template, assets, actions), as submitted.")
    async def nexrender_config(self, info: Info) -> JSON | None:
        if job_store.has_render_spec(self.model):
            return self.model.nexrender_config
        return await shared(
            self.model, "spec", lambda: info.context.render_specs.load(self.model.id)
        )

    @strawberry.field(
        description="The log, one '[UTC time] text' line per entry; with `tail`, its last "
        "lines. Past the size cap the oldest lines are dropped and a first line says so."
    )
    async def logs(self, info: Info, tail: int | None = None) -> str | None:
        wanted = (self.model, job_logs.check_tail(tail))
        return await shared(self.model, ("logs", tail), lambda: info.context.logs.load(wanted))

    @strawberry.field(
        description="The worker holding the job while it renders (for workers: only themselves)."
    )
    async def worker(self, info: Info) -> Annotated[User, strawberry.lazy("gql.types")] | None:
        if self.model.worker_id is None:
            return None
        return visible_person(info, await _person(info, self.model, self.model.worker_id))

    @strawberry.field(
        description="While RENDERING: when it should finish, from its progress rate so far "
        "(before the first report: its start plus estimatedTime)."
    )
    def estimated_completion_at(self) -> datetime | None:
        return estimates.estimated_completion_at(
            status=DomainJobStatus(self.model.status),
            started_at=self.model.started_at,
            progress=self.model.progress,
            estimated_time=self.model.estimated_time,
            now=clock.now(),
        )

    @strawberry.field(
        description="While QUEUED: when it should start, from the jobs ahead of it and the "
        "farm's completions over the last hour (null without recent history); in a retry "
        "backoff: notBefore, the earliest it may start."
    )
    async def estimated_start_at(self, info: Info) -> datetime | None:
        now = clock.now()
        return estimates.estimated_start_at(
            status=DomainJobStatus(self.model.status),
            not_before=self.model.not_before,
            queue_position=await _queue_position(info, self.model),
            finished_recently=await shared(
                self.model, "finished", lambda: info.context.finished_recently.load(now)
            ),
            now=now,
        )

    @strawberry.field(description="The user who submitted the job; null for workers.")
    def user(self, info: Info) -> Annotated[User, strawberry.lazy("gql.types")] | None:
        # A resolver may hand graphql-core an awaitable: a preloaded owner is answered at once.
        if not policy.can_see_owner(require_actor(info)):
            return None
        owner = preloaded(self.model, owner_key(self.model.user_id))
        if owner is MISSING:
            return self._owner_later(info)  # type: ignore[return-value]
        return None if owner is None else User.of(owner)

    async def _owner_later(self, info: Info) -> User | None:
        owner = await _person(info, self.model, self.model.user_id)
        return None if owner is None else User.of(owner)

    @strawberry.field(
        description="The job's history: every recorded change, oldest first, each with the job "
        "as that change left it (events of finished jobs are kept for the retention period)."
    )
    async def events(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Annotated[JobEventConnection, strawberry.lazy("gql.events")]:
        from gql.events import JobEventConnection

        page = await info.context.histories.load((self.model, history.HistoryRequest(first, after)))
        return JobEventConnection.of(page)

    @strawberry.field(description="The statuses this job may move to from where it stands.")
    def allowed_transitions(self) -> list[JobStatus]:
        return allowed_transitions(DomainJobStatus(self.status))

    @strawberry.field(
        description="1 for the next job to be claimed; null unless a claim could hand it out "
        "now (QUEUED, out of its retry backoff, before its deadline)."
    )
    def queue_position(self, info: Info) -> int | None:
        # A resolver may hand graphql-core an awaitable: a preloaded position is answered at once.
        if DomainJobStatus(self.model.status) is not DomainJobStatus.QUEUED:
            return None
        position = preloaded(self.model, QUEUE)
        if position is MISSING:
            return _queue_position(info, self.model)  # type: ignore[return-value]
        return position


def _stage_of(job: JobModel) -> DomainJobStage | None:
    # A job shown as an event recorded before stages existed has none in its recorded state.
    stage = job.__dict__.get("stage")
    return None if stage is None else DomainJobStage(stage)


T = TypeVar("T")


async def shared(job: JobModel, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
    """A value derived from one job object, computed once for everyone who resolves it. The
    event bus hands one job object to every subscriber of an event (event_store.job_at marks it),
    so a field such as queuePosition costs one read per event, not one per subscriber. Shielded:
    a subscriber that goes away does not cancel the read the others wait for. A job read for one
    request has one reader: it loads directly, without a task and a shield per field."""
    memo: dict[Hashable, asyncio.Future[Any]] | None = job.__dict__.get(event_store.SHARED_MEMO)
    if memo is None:
        return await load()
    future = memo.get(key)
    if future is None:
        future = memo[key] = asyncio.ensure_future(load())
    return await asyncio.shield(future)


def visible_person(info: Info, person: UserModel | None) -> User | None:
    """A user a job names (its worker, or who made a change), if the caller may know them."""
    if person is None:
        return None
    if not policy.can_see_person(require_actor(info), person.id, DomainRole(person.role)):
        return None
    return User.of(person)


async def _queue_position(info: Info, job: JobModel) -> int | None:
    position = preloaded(job, QUEUE)
    if position is not MISSING:
        return position
    return await shared(job, "queue", lambda: info.context.queue_positions.load(job))


async def _person(info: Info, job: JobModel, user_id: str) -> UserModel | None:
    return await shared(job, ("user", user_id), lambda: info.context.users_by_id.load(user_id))


@strawberry.type
class JobEdge:
    cursor: str
    node: Job


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type(description="A page of jobs with keyset cursors: pages do not shift on insert.")
class JobConnection:
    edges: list[JobEdge]
    page_info: PageInfo
    # Counted only when a client asks for totalCount: one more statement.
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many jobs match the filter, on every page.")
    async def total_count(self) -> int:
        return await self.count()

    @classmethod
    def of(cls, page: queries.Page, count: Callable[[], Awaitable[int]]) -> JobConnection:
        edges = [
            JobEdge(cursor=cursor, node=Job.of(job))
            for job, cursor in zip(page.jobs, page.cursors, strict=True)
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
            count=count,
        )


@strawberry.input(description="Narrows a job list; every given condition must hold.")
class JobFilter:
    status: list[JobStatus] | None = None
    user_id: strawberry.ID | None = strawberry.field(default=None, description="Admins only.")
    search: str | None = strawberry.field(
        default=None, description="Part of the project or output name, any case."
    )
    created_after: datetime | None = None
    created_before: datetime | None = None

    def to_query(self, order: JobOrder) -> queries.JobQuery:
        return queries.JobQuery(
            statuses=None if self.status is None else tuple(self.status),
            user_id=None if self.user_id is None else str(self.user_id),
            search=self.search,
            created_after=self.created_after,
            created_before=self.created_before,
            newest_first=order is JobOrder.NEWEST_FIRST,
        )


async def resolve_jobs(
    root: object,
    info: Info,
    filter: JobFilter | None = None,
    order_by: JobOrder | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> JobConnection:
    """`Query.jobs` and `User.jobs`: the same page, scoped to the user when asked on one."""
    actor = require_actor(info)
    query = (filter or JobFilter()).to_query(order_by or JobOrder.NEWEST_FIRST)
    request = queries.PageRequest(first=first, after=after, last=last, before=before)
    if isinstance(root, User):
        # A list of users' jobs is batched: one statement per distinct page, not one per user.
        owned = dataclasses.replace(query, user_id=None)
        context = info.context
        page = await context.owner_pages.load((actor, root.id, owned, request))
        await preload(info, page.jobs)
        return JobConnection.of(page, lambda: context.owner_counts.load((actor, root.id, owned)))
    page = await queries.page_of_jobs(actor, query, request)
    await preload(info, page.jobs)
    return JobConnection.of(page, lambda: queries.count_jobs(actor, query))


@strawberry.type(description="A person or a render worker.")
class User:
    id: strawberry.ID
    email: str
    name: str | None
    role: Role
    is_active: bool
    created_at: datetime
    model: strawberry.Private[UserModel]

    @classmethod
    def of(cls, user: UserModel) -> User:
        return cls(
            id=strawberry.ID(user.id),
            email=user.email,
            name=user.name,
            role=DomainRole(user.role),
            is_active=user.is_active,
            created_at=user.created_at,
            model=user,
        )

    jobs: JobConnection = strawberry.field(
        resolver=resolve_jobs, description="This user's jobs that the caller may see."
    )


@strawberry.type(description="A new user, or a new token, with the token shown this once.")
class CreatedUser:
    user: User
    token: str = strawberry.field(description="The API token; it is stored only as a hash.")


@strawberry.type(description="How many jobs stand in each status.")
class JobStats:
    pending: int
    validating: int
    queued: int
    rendering: int
    completed: int
    failed: int
    cancelled: int
    total: int

    @classmethod
    def of(cls, counts: dict[DomainJobStatus, int]) -> JobStats:
        return cls(
            **{status.value.lower(): count for status, count in counts.items()},
            total=sum(counts.values()),
        )
