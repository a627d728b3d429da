"""`rendertrack jobs list|show|cancel|retry`: the queue from a terminal, for operators without a
browser. Whoever can open the database sees every job, as an admin does; a cancel or retry from
here is recorded in the job's history as the system's doing (duty `system`), with its reason.

Listings go to stdout, tab-separated (or JSON with --json); messages go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from app.settings import Settings
from domain.errors import NotFound
from domain.events import JobEvent
from domain.policy import Actor
from domain.status import JobStatus, Role
from models import Job, User
from service import event_store, jobs, queries

T = TypeVar("T")
# cli._with_database: migrates, opens the database, runs the work, closes it.
RunWithDatabase = Callable[[Settings, Callable[[], Awaitable[Any]]], Any]
Handler = Callable[[argparse.Namespace, Settings], int]

# The console reads as an admin would; it never acts as one (changes pass no actor).
CONSOLE_READER = Actor(id="", role=Role.ADMIN)
DEFAULT_LISTED = 50
SHOWN_EVENTS = 20
SHOWN_LOG_LINES = 20
LIST_COLUMNS = ("id", "status", "progress", "priority", "owner", "worker", "project", "output")


def add_job_commands(commands: argparse._SubParsersAction, run: RunWithDatabase) -> None:
    job_commands = commands.add_parser(
        "jobs", help="list, inspect, cancel and retry jobs from the command line"
    ).add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    listing = job_commands.add_parser(
        "list", help="jobs, newest first: id, status, progress, priority, owner, worker, names"
    )
    listing.add_argument(
        "--status",
        action="append",
        type=_status,
        metavar="S",
        help="only jobs in this status (repeat or comma-separate: --status queued,rendering)",
    )
    listing.add_argument("--search", help="part of the project or output name, any case")
    listing.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LISTED,
        help=f"how many (1..{queries.MAX_PAGE_SIZE}, default {DEFAULT_LISTED})",
    )
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.set_defaults(handler=_bound(_list, run))

    show = job_commands.add_parser("show", help="one job: its fields, recent history, log tail")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=_bound(_show, run))

    cancel = job_commands.add_parser("cancel", help="cancel a job that has not finished")
    cancel.add_argument("id")
    cancel.add_argument("--reason", required=True, help="why, kept in the job's history")
    cancel.set_defaults(handler=_bound(_cancel, run))

    retry = job_commands.add_parser("retry", help="start a FAILED or CANCELLED job again")
    retry.add_argument("id")
    retry.set_defaults(handler=_bound(_retry, run))


def _bound(command: Callable[[argparse.Namespace, Any], int], run: RunWithDatabase) -> Handler:
    """The handler cli.main calls with (args, settings): the command, given a runner bound to
    those settings."""
    return lambda args, settings: command(args, lambda work: run(settings, work))


def _list(args: argparse.Namespace, run: Callable[[Callable[[], Awaitable[T]]], T]) -> int:
    statuses = tuple(status for group in args.status or () for status in group) or None
    query = queries.JobQuery(statuses=statuses, search=args.search)

    async def listing() -> tuple[list[Job], dict[str, User]]:
        page = await queries.page_of_jobs(
            CONSOLE_READER, query, queries.PageRequest(first=args.limit)
        )
        return page.jobs, await _people(page.jobs)

    found, people = run(listing)
    rows = [_summary(job, people) for job in found]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("\t".join(LIST_COLUMNS))
    for row in rows:
        print("\t".join(_cell(row[column]) for column in LIST_COLUMNS))
    more = " (there may be more: raise --limit or narrow it)" if len(rows) == args.limit else ""
    _say(f"{len(rows)} job(s){more}")
    return 0


def _show(args: argparse.Namespace, run: Callable[[Callable[[], Awaitable[T]]], T]) -> int:
    async def details() -> tuple[Job, dict[str, User], list[JobEvent], str | None]:
        job = await queries.job_for(CONSOLE_READER, args.id)
        if job is None:
            raise NotFound("Job", args.id)
        recent = await event_store.job_events(job.id, max(0, job.sequence - SHOWN_EVENTS))
        return job, await _people([job]), recent, await jobs.log_text(job, SHOWN_LOG_LINES)

    job, people, recent, log = run(details)
    shown = {
        **_summary(job, people),
        "stage": job.stage,
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "error": job.error_message,
        "template": job.template_path,
        "data": job.data_path,
        "output_path": job.output_path,
        "created": _moment(job.created_at),
        "queued": _moment(job.queued_at),
        "started": _moment(job.started_at),
        "completed": _moment(job.completed_at),
        "heartbeat": _moment(job.heartbeat_at),
        "deadline": _moment(job.auto_cancel_at),
    }
    history = [_event_row(event) for event in recent]
    if args.json:
        print(json.dumps({**shown, "history": history, "log": log}, indent=2))
        return 0
    for name, value in shown.items():
        print(f"{name + ':':<13}{_cell(value)}")
    print(f"\nhistory (last {len(history)}):")
    for event in history:
        print(
            f"  #{event['sequence']:<4} {event['at']}  {event['kind']:<15} "
            f"{_cell(event['status']):<10} {event['progress']:>3}%  {event['by']}"
            + (f"  ({event['reason']})" if event["reason"] else "")
        )
    print(f"\nlog (last {SHOWN_LOG_LINES} lines):")
    print(log or "  (empty)")
    return 0


def _cancel(args: argparse.Namespace, run: Callable[[Callable[[], Awaitable[T]]], T]) -> int:
    async def cancel() -> Job:
        return await jobs.cancel(args.id, args.reason)

    job = run(cancel)
    _say(f"cancelled {job.id} ({job.project_name} / {job.output_name}): {args.reason}")
    return 0


def _retry(args: argparse.Namespace, run: Callable[[Callable[[], Awaitable[T]]], T]) -> int:
    async def retry() -> Job:
        return await jobs.retry(args.id)

    job = run(retry)
    _say(f"{job.id} starts again: now {JobStatus(job.status).value}")
    return 0


async def _people(found: Sequence[Job]) -> dict[str, User]:
    ids = {job.user_id for job in found} | {job.worker_id for job in found if job.worker_id}
    people = await queries.users_by_ids(sorted(ids))
    return {person.id: person for person in people if person is not None}


def _summary(job: Job, people: dict[str, User]) -> dict[str, Any]:
    owner = people.get(job.user_id)
    worker = people.get(job.worker_id) if job.worker_id else None
    return {
        "id": job.id,
        "status": JobStatus(job.status).value,
        "progress": job.progress,
        "priority": job.priority,
        "owner": owner.email if owner else job.user_id,
        "worker": worker.email if worker else job.worker_id,
        "project": job.project_name,
        "output": job.output_name,
    }


def _event_row(event: JobEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "at": _moment(event.updated_at),
        "kind": event.kind.value,
        "status": event.status.value,
        "progress": event.progress,
        "by": event.actor_id or (event.duty.value if event.duty else "system"),
        "reason": event.reason,
    }


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return str(value).replace("\t", " ").replace("\n", " ")


def _status(raw: str) -> tuple[JobStatus, ...]:
    try:
        return tuple(JobStatus(part.strip().upper()) for part in raw.split(",") if part.strip())
    except ValueError:
        names = ", ".join(status.value.lower() for status in JobStatus)
        raise argparse.ArgumentTypeError(f"{raw!r} is not a status ({names})") from None


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= queries.MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {queries.MAX_PAGE_SIZE}, not {raw!r}"
        )
    return int(raw)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
