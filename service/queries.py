"""The read side: which jobs an actor sees, pages of them with keyset cursors, the queue, counts.

Cursors are keyset cursors on (created_at, id): a page does not shift when jobs are inserted.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from domain import estimates, policy
from domain.errors import BadUserInput, FieldError, Forbidden
from domain.lookups import check_id, check_search, is_well_formed_id
from domain.policy import Actor
from domain.status import JobStage, JobStatus, Role
from domain.validation import check_moment
from models import Job, JobEventRecord, User
from service import clock, job_store
from service.visibility import visible_jobs

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class JobQuery:
    statuses: tuple[JobStatus, ...] | None = None
    user_id: str | None = None
    search: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    newest_first: bool = True


@dataclass(frozen=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool


async def job_for(actor: Actor, job_id: str) -> Job | None:
    """The job, or None when it does not exist or the actor may not see it."""
    if not is_well_formed_id(job_id):
        return None
    job = await job_store.read_row(job_id)
    if job is None or not policy.can_see_job(
        actor, job.user_id, job.worker_id, JobStatus(job.status)
    ):
        return None
    return job


def filtered_jobs(actor: Actor, query: JobQuery) -> QuerySet[Job]:
    jobs = visible_jobs(actor)
    if query.statuses is not None:
        jobs = jobs.filter(status__in=list(query.statuses))
    if query.user_id is not None:
        check_id(query.user_id, "user_id")
        if not policy.can_list_jobs_of(actor, query.user_id):
            raise Forbidden("Only admins list another user's jobs.")
        jobs = jobs.filter(user_id=query.user_id)
    term = None if query.search is None else check_search(query.search)
    if term:
        jobs = jobs.filter(Q(project_name__icontains=term) | Q(output_name__icontains=term))
    if query.created_after is not None:
        jobs = jobs.filter(created_at__gt=check_moment(query.created_after, "created_after"))
    if query.created_before is not None:
        jobs = jobs.filter(created_at__lt=check_moment(query.created_before, "created_before"))
    return jobs


async def count_jobs(actor: Actor, query: JobQuery) -> int:
    return await filtered_jobs(actor, query).count()


async def page_of_jobs(actor: Actor, query: JobQuery, request: PageRequest) -> Page:
    size, forward = _page_size(request)
    jobs = _ordered_page(filtered_jobs(actor, query), query, request, forward)
    return _page_of(await jobs.limit(size + 1), size, forward, request)


async def pages_of_owners(
    actor: Actor, query: JobQuery, request: PageRequest, owner_ids: list[str]
) -> list[Page | Exception]:
    """The same page of each owner's jobs (`User.jobs` across a list of users) in one
    statement: the filtered, ordered jobs of all the owners, numbered per owner, cut at the page
    size. An owner the actor may not list gets its refusal instead."""
    size, forward = _page_size(request)
    allowed = [owner for owner in owner_ids if policy.can_list_jobs_of(actor, owner)]
    jobs = _ordered_page(
        filtered_jobs(actor, replace(query, user_id=None)).filter(user_id__in=allowed),
        query,
        request,
        forward,
    )
    by_owner: dict[str, list[Job]] = {owner: [] for owner in allowed}
    if allowed:
        for job in await _first_rows_per_owner(jobs, query, forward, size + 1):
            by_owner[job.user_id].append(job)
    refusal = Forbidden("Only admins list another user's jobs.")
    return [
        _page_of(by_owner[owner], size, forward, request) if owner in by_owner else refusal
        for owner in owner_ids
    ]


async def counts_of_owners(
    actor: Actor, query: JobQuery, owner_ids: list[str]
) -> list[int | Exception]:
    """How many jobs each owner has under `query` (User.jobs' totalCount), in one statement."""
    allowed = [owner for owner in owner_ids if policy.can_list_jobs_of(actor, owner)]
    counts: dict[str, int] = dict.fromkeys(allowed, 0)
    if allowed:
        rows = (
            await filtered_jobs(actor, replace(query, user_id=None))
            .filter(user_id__in=allowed)
            .annotate(count=Count("id"))
            .group_by("user_id")
            .values("user_id", "count")
        )
        counts.update({row["user_id"]: row["count"] for row in rows})
    refusal = Forbidden("Only admins list another user's jobs.")
    return [counts.get(owner, refusal) for owner in owner_ids]


def _ordered_page(
    jobs: QuerySet[Job], query: JobQuery, request: PageRequest, forward: bool
) -> QuerySet[Job]:
    """`jobs` past the page's cursor, in the page's order, without their render spec."""
    descending = query.newest_first == forward  # walking backwards reverses the order
    cursor = request.after if forward else request.before
    if cursor is not None:
        created_at, job_id = decode_cursor(cursor, "after" if forward else "before")
        jobs = jobs.filter(_beyond(created_at, job_id, descending))
    direction = "-" if descending else ""
    return jobs.order_by(f"{direction}created_at", f"{direction}id").only(*job_store.ROW_FIELDS)


async def _first_rows_per_owner(
    jobs: QuerySet[Job], query: JobQuery, forward: bool, count: int
) -> list[Job]:
    """The first `count` rows of each owner in `jobs`' order: its SQL (as Tortoise would send
    it, parameters and all) numbered per owner by a window."""
    jobs._make_query()  # what QuerySet.sql() does, keeping the parameters
    inner, parameters = jobs.query.get_parameterized_sql()
    order = "DESC" if query.newest_first == forward else "ASC"
    rows = await connections.get("default").execute_query_dict(
        f"""SELECT * FROM (
            SELECT "page".*, ROW_NUMBER() OVER (
                PARTITION BY "page"."user_id"
                ORDER BY "page"."created_at" {order}, "page"."id" {order}) AS "rank_in_owner"
            FROM ({inner}) AS "page"
        ) AS "ranked" WHERE "rank_in_owner" <= {int(count)}
        ORDER BY "user_id", "rank_in_owner" """,
        list(parameters),
    )
    for row in rows:
        row.pop("rank_in_owner")
    return [Job._init_from_db(**row) for row in rows]


def _page_of(rows: list[Job], size: int, forward: bool, request: PageRequest) -> Page:
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    return Page(
        jobs=rows,
        cursors=[encode_cursor(job) for job in rows],
        has_next_page=more if forward else request.before is not None,
        has_previous_page=request.after is not None if forward else more,
    )


def _page_size(request: PageRequest) -> tuple[int, bool]:
    errors: list[FieldError] = []
    if request.first is not None and request.last is not None:
        errors.append(FieldError("last", "cannot be combined with first: page one way at a time"))
    for name in ("first", "last"):
        value = getattr(request, name)
        if value is not None and value < 0:
            errors.append(FieldError(name, "must not be negative"))
    if request.after is not None and request.before is not None:
        errors.append(FieldError("before", "cannot be combined with after"))
    if errors:
        raise BadUserInput(errors)
    if request.last is not None or (request.before is not None and request.first is None):
        return min(request.last or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE), False
    size = DEFAULT_PAGE_SIZE if request.first is None else request.first
    return min(size, MAX_PAGE_SIZE), True


def _beyond(created_at: datetime, job_id: str, descending: bool) -> Q:
    if descending:
        return Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=job_id)
    return Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=job_id)


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, field: str) -> tuple[datetime, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        moment = datetime.fromisoformat(created_at)
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        moment, job_id = None, None
    if moment is None or moment.tzinfo is None or not is_well_formed_id(job_id):
        raise BadUserInput.single(field, "is not a cursor this API gave out")
    return moment, job_id


async def queue(actor: Actor, first: int | None = None) -> list[Job]:
    """The QUEUED jobs the actor may see (admins and workers: all; users: theirs), in the order
    claims will hand them out: first those a claim could take now, in queue order, then those
    waiting out a retry backoff, soonest first."""
    size = min(DEFAULT_PAGE_SIZE if first is None else first, MAX_PAGE_SIZE)
    if size < 0:
        raise BadUserInput.single("first", "must not be negative")
    now = clock.now()
    queued = visible_jobs(actor).filter(status=JobStatus.QUEUED).only(*job_store.ROW_FIELDS)
    ready = await (
        queued.filter(Q(not_before=None) | Q(not_before__lte=now))
        .order_by("-priority", "queued_at", "id")
        .limit(size)
    )
    # Asked even when the page is full: a request's statements do not depend on its rows.
    waiting = await (
        queued.filter(not_before__gt=now)
        .order_by("not_before", "-priority", "queued_at", "id")
        .limit(size - len(ready))
    )
    return ready + waiting


async def queue_positions(jobs: list[Job]) -> list[int | None]:
    """Each job's place in the claim order (1: claimed next), None unless a claim could hand it
    out now (QUEUED, out of its retry backoff, before its deadline): one statement for the whole
    list."""
    positions = await job_store.queue_positions(connections.get("default"), jobs, clock.now())
    return [positions.get(job.id) for job in jobs]


async def render_specs(job_ids: list[str]) -> list[dict[str, Any] | None]:
    """nexrender_config of each job, read only for callers that ask for it: one statement."""
    specs = await job_store.render_specs(connections.get("default"), job_ids)
    return [specs.get(job_id) for job_id in job_ids]


async def render_specs_of(jobs: list[Job]) -> dict[str, dict[str, Any] | None]:
    """Each job's nexrender_config by id: read in one statement for the jobs read without it,
    taken from the others (a Nexrender claim reads it with the row)."""
    unread = [job.id for job in jobs if not job_store.has_render_spec(job)]
    specs = dict(zip(unread, await render_specs(unread), strict=True)) if unread else {}
    specs.update((job.id, job.nexrender_config) for job in jobs if job.id not in specs)
    return specs


async def finished_recently(now: datetime) -> int:
    """How many jobs COMPLETED within estimates.THROUGHPUT_WINDOW before `now`."""
    since = now - estimates.THROUGHPUT_WINDOW
    return await job_store.completed_since(connections.get("default"), since)


async def job_stats(actor: Actor) -> dict[JobStatus, int]:
    rows = (
        await visible_jobs(actor)
        .annotate(count=Count("id"))
        .group_by("status")
        .values("status", "count")
    )
    counts = dict.fromkeys(JobStatus, 0)
    for row in rows:
        counts[JobStatus(row["status"])] = row["count"]
    return counts


async def users_by_ids(ids: list[str]) -> list[User | None]:
    """For the per-request DataLoader: the ids come from stored rows, not from clients."""
    found = {user.id: user for user in await User.filter(id__in=ids)}
    return [found.get(user_id) for user_id in ids]


async def all_users(actor: Actor) -> list[User]:
    if not policy.can_manage_users(actor):
        raise Forbidden("Only admins list users.")
    return await User.all().order_by("created_at", "id")


# Jobs one Nexrender listing (GET /api/v1/jobs) answers at most.
MAX_LISTED = 200


async def nexrender_listing(actor: Actor, limit: int = MAX_LISTED) -> list[Job]:
    """The jobs a Nexrender listing shows the actor. A worker: what it may claim now that a
    Nexrender worker can render (QUEUED, with a nexrender_config, out of backoff, before its
    deadline) in claim order, then the jobs it is rendering. Others: the jobs they may see,
    newest first. Without render specs (`render_specs` reads them in one statement)."""
    if actor.role is Role.WORKER:
        now = clock.now()
        claimable = await (
            visible_jobs(actor)
            .filter(status=JobStatus.QUEUED, nexrender_config__isnull=False)
            .filter(Q(not_before=None) | Q(not_before__lte=now))
            .filter(Q(auto_cancel_at=None) | Q(auto_cancel_at__gt=now))
            .order_by("-priority", "queued_at", "id")
            .limit(limit)
            .only(*job_store.ROW_FIELDS)
        )
        # Asked even when the page is full: a request's statements do not depend on its rows.
        held = await (
            visible_jobs(actor)
            .filter(status=JobStatus.RENDERING, worker_id=actor.id)
            .order_by("started_at", "id")
            .limit(max(0, limit - len(claimable)))
            .only(*job_store.ROW_FIELDS)
        )
        return claimable + held
    jobs = visible_jobs(actor).order_by("-created_at", "-id").limit(limit)
    return await jobs.only(*job_store.ROW_FIELDS)


# (status, stage, the first time a change left the job so)
StatusEntry = tuple[JobStatus, JobStage | None, datetime]


async def status_entries(job_ids: list[str]) -> dict[str, list[StatusEntry]]:
    """For each job, every (status, stage) its history has it in, with the first time a change
    left it so: one statement for all the jobs (an index range of job_events per job)."""
    wanted = list(dict.fromkeys(job_ids))
    found: dict[str, list[StatusEntry]] = {job_id: [] for job_id in wanted}
    if not wanted:
        return found
    db = connections.get("default")
    stage = (
        """CAST("state" AS json) ->> 'stage'"""
        if db.capabilities.dialect == "postgres"
        else """json_extract("state", '$.stage')"""
    )
    marks = ", ".join(job_store.placeholder(db, n) for n in range(1, len(wanted) + 1))
    rows = await db.execute_query_dict(
        f"""SELECT "job_id", "status", {stage} AS "stage", MIN("at") AS "first_at"
        FROM "job_events" WHERE "job_id" IN ({marks}) GROUP BY 1, 2, 3""",
        wanted,
    )
    for row in rows:
        found[row["job_id"]].append(
            (
                JobStatus(row["status"]),
                JobStage(row["stage"]) if row["stage"] else None,
                job_store.moment_of(row["first_at"]),
            )
        )
    return found


async def was_held_by(worker_id: str, job_id: str) -> bool:
    """Whether the worker ever held the job, as the job's history tells."""
    if not is_well_formed_id(job_id):
        return False
    return await JobEventRecord.filter(job_id=job_id, worker_id=worker_id).exists()
