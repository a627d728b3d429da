"""What an operator counts, defined once: the Prometheus metrics that the use cases, the buses,
the sweeper, the GraphQL layer and the app increment where each thing happens, and the read of
the jobs table that a scrape reports.

Under `rendertrack serve --workers N` every process writes its counters and histograms to
PROMETHEUS_MULTIPROC_DIR (set before the workers start), so a scrape of any process adds up all
of them; the gauges of live things (websockets, subscriptions) sum the processes still alive.
The jobs by status and the queue depth are read from the database at scrape time, so they are
right whichever process changed the jobs.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from tortoise import connections

from domain.events import JobEvent, JobEventKind
from domain.status import JobStatus
from service import clock

P = ParamSpec("P")
T = TypeVar("T")

# The APIs a request comes in through; "internal" for the sweeper, the command line and tests
# that call the use cases directly.
GRAPHQL, NEXRENDER, INTERNAL = "graphql", "nexrender", "internal"

SWEEP_ACTIONS = ("requeued", "failed", "cancelled", "pruned")

disable_created_metrics()  # no `_created` series: a scrape carries what an operator reads

CLAIMS = Counter(
    "rendertrack_claims",
    "Jobs handed to a worker (QUEUED to RENDERING), by the API the worker used.",
    ["path"],
)
CLAIM_SECONDS = Histogram(
    "rendertrack_claim_duration_seconds",
    "Time a claim took in the server, including claims that found no job to hand out.",
    ["path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PROGRESS_REPORTS = Counter(
    "rendertrack_progress_reports",
    "Reports accepted from the worker of a rendering job (progress, stage, a log line, or "
    "a bare heartbeat), by API.",
    ["path"],
)
EVENTS = Counter(
    "rendertrack_events_published",
    "Job changes recorded in the history and published to subscribers, by kind.",
    ["kind"],
)
WEBSOCKETS = Gauge(
    "rendertrack_websocket_connections",
    "Open websockets whose connection_init was accepted.",
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "rendertrack_active_subscriptions",
    "GraphQL subscriptions running on websockets.",
    multiprocess_mode="livesum",
)
BUS_RECONNECTS = Counter(
    "rendertrack_bus_reconnects",
    "Times the PostgreSQL LISTEN connection of the event bus was re-established.",
)
BUS_READ_RETRIES = Counter(
    "rendertrack_bus_read_retries",
    "Reads of the job_events table by the event dispatcher that failed and were retried.",
)
SWEEPER_ACTIONS = Counter(
    "rendertrack_sweeper_actions",
    "What the sweeper did: stalled jobs requeued or failed, overdue jobs cancelled, events of "
    "finished jobs pruned.",
    ["action"],
)
HTTP_SECONDS = Histogram(
    "rendertrack_http_request_duration_seconds",
    "HTTP requests by operation: the GraphQL operation's type and name for /graphql, the "
    "method and route elsewhere.",
    ["operation"],
)

# Children created up front, so that a scrape shows every known series from the start (at 0).
for _path in (GRAPHQL, NEXRENDER):
    CLAIMS.labels(_path)
    CLAIM_SECONDS.labels(_path)
    PROGRESS_REPORTS.labels(_path)
for _kind in JobEventKind:
    if _kind is not JobEventKind.SNAPSHOT:  # a subscription's view, never recorded
        EVENTS.labels(_kind.value)
for _action in SWEEP_ACTIONS:
    SWEEPER_ACTIONS.labels(_action)


# --- the request being served -------------------------------------------------------------------


@dataclass
class RequestFacts:
    """What the app and the service tell each other about the request a task serves: the API it
    came through (the label of the use cases' counters) and the user its token turned out to be
    (its log line)."""

    api: str = INTERNAL
    user_id: str | None = None


_request: ContextVar[RequestFacts | None] = ContextVar("rendertrack_request", default=None)


def begin_request(api: str) -> tuple[RequestFacts, Token[RequestFacts | None]]:
    """For the app, around one request (or websocket): the tasks it runs see these facts."""
    facts = RequestFacts(api)
    return facts, _request.set(facts)


def end_request(token: Token[RequestFacts | None]) -> None:
    _request.reset(token)


def current_api() -> str:
    facts = _request.get()
    return INTERNAL if facts is None else facts.api


def note_user(user_id: str) -> None:
    """Where a token is found to be an active user's: the request's log line names the user."""
    facts = _request.get()
    if facts is not None:
        facts.user_id = user_id


# --- the use cases ------------------------------------------------------------------------------


def claim(use_case: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Times a claim use case that ran (it returns a job, or None when there was none; a
    refused claim raises and is neither timed nor counted) and counts the jobs it hands out."""

    @functools.wraps(use_case)
    async def measured(*args: P.args, **kwargs: P.kwargs) -> T:
        path = current_api()
        started = time.perf_counter()
        job = await use_case(*args, **kwargs)
        CLAIM_SECONDS.labels(path).observe(time.perf_counter() - started)
        if job is not None:
            CLAIMS.labels(path).inc()
        return job

    return measured


def progress_report(use_case: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Counts the reports the use case accepts (a refused one raises)."""

    @functools.wraps(use_case)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> T:
        result = await use_case(*args, **kwargs)
        PROGRESS_REPORTS.labels(current_api()).inc()
        return result

    return counted


def events_recorded(events: Iterable[JobEvent]) -> None:
    for event in events:
        EVENTS.labels(event.kind.value).inc()


# --- the jobs table, read at scrape time ----------------------------------------------------


@dataclass(frozen=True)
class JobCounts:
    by_status: dict[JobStatus, int]
    # QUEUED jobs a claim could hand out now: out of their retry backoff, before their deadline.
    claimable: int


async def job_counts() -> JobCounts:
    """One statement: every job counted by status, and the claimable ones among the QUEUED."""
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    p1, p2 = ("$1", "$2") if postgres else ("?1", "?2")
    now = clock.now()
    rows = await connection.execute_query_dict(
        f"""SELECT "status", COUNT(*) AS "jobs",
          SUM(CASE WHEN "status" = 'QUEUED'
                    AND ("not_before" IS NULL OR "not_before" <= {p1})
                    AND ("auto_cancel_at" IS NULL OR "auto_cancel_at" > {p2})
                   THEN 1 ELSE 0 END) AS "claimable"
        FROM "jobs" GROUP BY "status"
        """,
        [now, now],
    )
    by_status = dict.fromkeys(JobStatus, 0)
    claimable = 0
    for row in rows:
        by_status[JobStatus(row["status"])] = int(row["jobs"])
        claimable += int(row["claimable"] or 0)
    return JobCounts(by_status, claimable)


# --- operation labels -------------------------------------------------------------------------

ANONYMOUS = "anonymous"
OTHER = "other"
# Bounds on the label values of HTTP_SECONDS: a client names its operations, and each name is
# a series of its own.
MAX_OPERATION_NAME = 64
MAX_OPERATION_NAMES = 200
OPERATION_TYPES = ("query", "mutation", "subscription")

# What matters at the top level of a GraphQL document: strings and comments (skipped, so that
# their text is not read as names), brackets, and names.
_LEXEME = re.compile(
    r'"""[\s\S]*?(?<!\\)"""|"(?:\\.|[^"\\\n])*"|#[^\n]*|[{}()]|[_A-Za-z][_0-9A-Za-z]*'
)


# Documents whose operation is remembered (clients send the same few again and again), and
# the longest text remembered.
REMEMBERED_DOCUMENTS = 256
REMEMBERED_TEXT_CHARS = 16 * 1024


def graphql_operation(document: object, operation_name: object = None) -> tuple[str, str | None]:
    """(type, name) of the operation a request runs: the one named `operation_name`, else the
    document's only operation; ("", None) when that cannot be told. A cheap scan of the text
    for labels and log lines, not a parse: a malformed document is refused by the real one."""
    if not isinstance(document, str):
        return "", None
    if len(document) <= REMEMBERED_TEXT_CHARS and (
        operation_name is None or isinstance(operation_name, str)
    ):
        return _remembered_operation(document, operation_name)
    return _scanned_operation(document, operation_name)


@functools.lru_cache(maxsize=REMEMBERED_DOCUMENTS)
def _remembered_operation(document: str, operation_name: str | None) -> tuple[str, str | None]:
    return _scanned_operation(document, operation_name)


def _scanned_operation(document: str, operation_name: object) -> tuple[str, str | None]:
    operations: list[tuple[str, str | None]] = []
    depth = 0
    # At the top level: an operation type waiting for its name, "defined" once it has one (or
    # its variables began), "fragment" inside a fragment's header.
    pending: str | None = None
    for match in _LEXEME.finditer(document):
        token = match.group()
        if token[0] in '"#':
            continue
        if token in "{(":
            if depth == 0:
                if pending in OPERATION_TYPES:
                    operations.append((pending, None))
                    pending = "defined"
                elif pending is None and token == "{":
                    operations.append(("query", None))  # the shorthand `{ ... }`
                if token == "{":
                    pending = None
            depth += 1
        elif token in "})":
            depth = max(depth - 1, 0)
        elif depth == 0:
            if pending in OPERATION_TYPES:
                operations.append((pending, token))
                pending = "defined"
            elif pending is None and token in OPERATION_TYPES:
                pending = token
            elif pending is None and token == "fragment":
                pending = "fragment"
    if isinstance(operation_name, str) and operation_name:
        found = [operation for operation in operations if operation[1] == operation_name]
        return found[0] if len(found) == 1 else ("", None)
    return operations[0] if len(operations) == 1 else ("", None)


class OperationLabels:
    """Label values for HTTP_SECONDS, bounded: an unknown or unnamed GraphQL operation is
    "anonymous", and a name longer than MAX_OPERATION_NAME or past the first
    MAX_OPERATION_NAMES distinct ones (per process) is "other"."""

    def __init__(self, most: int = MAX_OPERATION_NAMES) -> None:
        self._most = most
        self._seen: set[str] = set()

    def graphql(self, kind: str, name: str | None) -> str:
        if not kind:
            return ANONYMOUS
        if not name:
            return f"{kind} {ANONYMOUS}"
        label = f"{kind} {name}"
        if label in self._seen:
            return label
        if len(name) > MAX_OPERATION_NAME or len(self._seen) >= self._most:
            return f"{kind} {OTHER}"
        self._seen.add(label)
        return label
