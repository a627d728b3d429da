"""Claim latency at scale: does handing out the next job stay fast when the table is large?

`service.jobs.claim_next(worker)` (the real use case: one transaction, the claim's SELECT, the
compare-and-set UPDATE) is timed on PostgreSQL in two cases that differ only in the size of the
queue, both beside the same history of 800,000 finished jobs (70% COMPLETED, 20% FAILED, 10%
CANCELLED):

- 1k: 1,000 QUEUED jobs;
- 200k: 200,000 QUEUED jobs.

The goal is p50(200k) / p50(1k) <= 1.3: the claim's cost should follow neither the history nor
the length of the queue.

Side by side: each case has a database of its own, loaded once with the same rows and
statistics, and the rounds alternate between the two (1k then 200k, then 200k then 1k, ...) so
the machine's drift hits both alike; rounds are short (25 timed claims, well under a second)
so that a burst of load from elsewhere lands on one round of each case rather than on all of
one case. Two databases rather than one whose jobs are moved between QUEUED and a finished
status between rounds: moving 199,000 rows back and forth would leave dead tuples and index
entries behind and call for VACUUM and ANALYZE between rounds, so the rounds would not measure
the same table, and the 1k case would not have exactly the same 800,000 finished jobs beside
it. Each round opens the database afresh (new connections, so
prepared statements start over), claims WARMUP_CLAIMS jobs untimed (past the five custom
plans after which PostgreSQL may settle on a generic one), then times CLAIMS_PER_ROUND claims
one after the other. The headline is the ratio of the two cases' p50 over all timed claims;
the median and range of the per-round ratios say how steady it was. A claimed job is left
RENDERING: the queue stays large (the 1k case hands out 397 of its 1,000 jobs) and the rows
handed out stay in the table as they would. No live bus is installed, so the time is the
claim's transaction alone.

Rows are created by one `INSERT INTO jobs (...) SELECT ... FROM generate_series(...)` per batch
of 100,000. The columns come from the database as the latest migration left it: every column the
loader knows is filled when the table has it, and any other NOT NULL column without a default
gets a value of its type (printed, so a new column never passes silently). Then VACUUM
(ANALYZE), as the autovacuum of a long-lived table would have done.

The plan: the SQL of one claim_next is captured from the "tortoise.db_client" logger (DEBUG),
the statement that picks the job (the one with FOR UPDATE) has its parameters substituted and
runs under EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back. The same statement
is also explained as a generic plan (what a prepared statement may switch to after five runs),
and the database's own count of custom and generic plans for the claim on the timed connections
says which one the service ran.

    python -m bench claims          # PostgreSQL only: skipped with a message if it does not answer
    RENDERTRACK_BENCH_POSTGRES_URL=postgres://user@host:5432/db python -m bench claims

Results go to bench/results/latest.json (key "claims"); bench/RESULTS.md keeps the record.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import asyncpg
from tortoise import connections

from app.database import open_database
from app.migrations import apply_migrations
from bench.common import (
    machine,
    percentiles,
    postgres_reachable,
    postgres_server,
    source_state,
    write_results,
)
from domain.policy import Actor
from domain.status import JobStatus
from migrations import MIGRATIONS_LOCATION
from service import jobs, users
from testkit.jobs import VALID_JOB_FIELDS
from testkit.postgres import asyncpg_url, fresh_postgres_database
from testkit.sql_log import capture_sql

FINISHED = 800_000
CASES = {"1k": 1_000, "200k": 200_000}  # name: QUEUED jobs
ROUNDS = 12
WARMUP_CLAIMS = 8
CLAIMS_PER_ROUND = 25
BATCH = 100_000
GOAL = 1.3

# queued_at: the history spread over ~92 days (10 s apart), the queue after it (1 s apart).
HISTORY_START = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
QUEUE_START = "TIMESTAMPTZ '2026-04-05 00:00:00+00'"
FINISHED_STATUS = (
    "CASE WHEN g.i % 10 < 7 THEN 'COMPLETED' WHEN g.i % 10 < 9 THEN 'FAILED' ELSE 'CANCELLED' END"
)


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def known_columns(owner_id: str) -> dict[str, str]:
    """What the loader writes, by column; `s.i` is the row number, `s.st` its status, `s.q` its
    queued_at. Only the columns the table has are used."""
    finished = "s.st <> 'QUEUED'"
    started = "s.q + INTERVAL '30 seconds'"
    run = "(60 + s.i % 900)"
    completed = f"{started} + {run} * INTERVAL '1 second'"
    return {
        "id": "'b' || lpad(s.i::text, 24, '0')",
        "user_id": _text(owner_id),
        "project_name": "'Bench ' || (s.i % 500)",
        "output_name": "'render_' || s.i || '.mp4'",
        "template_path": _text(VALID_JOB_FIELDS["template_path"]),
        "data_path": _text(VALID_JOB_FIELDS["data_path"]),
        "output_path": _text(VALID_JOB_FIELDS["output_path"]),
        "status": "s.st",
        "priority": "1 + (s.i * 7) % 10",
        "progress": "CASE s.st WHEN 'COMPLETED' THEN 100 WHEN 'QUEUED' THEN 0 ELSE s.i % 100 END",
        "queued_at": "s.q",
        "started_at": f"CASE WHEN {finished} THEN {started} END",
        "completed_at": f"CASE WHEN {finished} THEN {completed} END",
        "actual_time": f"CASE WHEN {finished} THEN {run} END",
        "error_message": "CASE WHEN s.st = 'FAILED' THEN 'aerender exited with code 1' END",
        "cancelled_reason": "CASE WHEN s.st = 'CANCELLED' THEN 'no longer needed' END",
        "sequence": f"CASE WHEN {finished} THEN 5 ELSE 3 END",
        "attempts": f"CASE WHEN {finished} THEN 1 ELSE 0 END",
        "created_at": "s.q",
        "updated_at": f"CASE WHEN {finished} THEN {completed} ELSE s.q END",
    }


FILL_BY_TYPE = {
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "numeric": "0",
    "real": "0",
    "double precision": "0",
    "boolean": "FALSE",
    "character varying": "''",
    "character": "''",
    "text": "''",
    "timestamp with time zone": "s.q",
    "timestamp without time zone": "s.q",
    "date": "s.q::date",
    "json": "'{}'",
    "jsonb": "'{}'",
}


@dataclass
class Columns:
    expressions: dict[str, str]  # column: SQL
    filled_by_type: list[str]  # NOT NULL columns without default the loader did not know


async def job_columns(connection: Any, owner_id: str) -> Columns:
    rows = await connection.execute_query_dict(
        "SELECT column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'jobs'"
        " ORDER BY ordinal_position"
    )
    known = known_columns(owner_id)
    expressions, by_type = {}, []
    for row in rows:
        name = row["column_name"]
        if name in known:
            expressions[name] = known[name]
        elif row["is_nullable"] == "NO" and row["column_default"] is None:
            if row["data_type"] not in FILL_BY_TYPE:
                raise SystemExit(f"jobs.{name} ({row['data_type']}): no value to load it with")
            expressions[name] = FILL_BY_TYPE[row["data_type"]]
            by_type.append(f"{name} ({row['data_type']})")
    return Columns(expressions, by_type)


def insert_batch(columns: Columns, first: int, last: int, *, queued: bool) -> str:
    status = "'QUEUED'" if queued else FINISHED_STATUS
    start, offset, step = (
        (QUEUE_START, FINISHED, "1 second") if queued else (HISTORY_START, 0, "10 seconds")
    )
    names = ", ".join(f'"{name}"' for name in columns.expressions)
    values = ",\n       ".join(columns.expressions.values())
    return (
        f'INSERT INTO "jobs" ({names})\n'
        f"SELECT {values}\n"
        f"FROM (SELECT g.i, {status} AS st,"
        f" {start} + (g.i - {offset}) * INTERVAL '{step}' AS q"
        f" FROM generate_series({first}, {last}) AS g(i)) AS s"
    )


@dataclass
class Case:
    name: str
    queued: int
    url: str
    worker: Actor | None = None
    load_seconds: float = 0.0
    filled_by_type: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    round_p50s: list[float] = field(default_factory=list)
    custom_plans: int = 0
    generic_plans: int = 0
    claim_sql: str = ""
    plan: list[str] = field(default_factory=list)
    generic_plan: list[str] = field(default_factory=list)


async def load(case: Case) -> None:
    await apply_migrations(case.url)
    async with open_database(case.url):
        owner = (await users.create_user("owner@example.com")).user
        worker = (await users.create_user("worker@example.com", role="worker")).user
        case.worker = users.actor_of(worker)
        connection = connections.get("default")
        columns = await job_columns(connection, owner.id)
        case.filled_by_type = columns.filled_by_type
        started = time.perf_counter()
        for first in range(1, FINISHED + 1, BATCH):
            last = min(first + BATCH - 1, FINISHED)
            await connection.execute_script(insert_batch(columns, first, last, queued=False))
        for first in range(FINISHED + 1, FINISHED + case.queued + 1, BATCH):
            last = min(first + BATCH - 1, FINISHED + case.queued)
            await connection.execute_script(insert_batch(columns, first, last, queued=True))
        await connection.execute_script('VACUUM (ANALYZE) "jobs"')
        case.load_seconds = time.perf_counter() - started
        rows = await connection.execute_query_dict(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'jobs' ORDER BY indexname"
        )
        case.indexes = [row["indexdef"] for row in rows]
        counts = await connection.execute_query_dict(
            'SELECT status, count(*) AS n FROM "jobs" GROUP BY status ORDER BY status'
        )
        print(
            f"  {case.name}: loaded in {case.load_seconds:.1f} s:",
            ", ".join(f"{row['status']} {row['n']:,}" for row in counts),
            flush=True,
        )


async def claim(worker: Actor) -> None:
    job = await jobs.claim_next(worker)
    assert job is not None and job.status == JobStatus.RENDERING, job


async def timed_round(case: Case) -> None:
    assert case.worker is not None
    async with open_database(case.url):
        for _ in range(WARMUP_CLAIMS):
            await claim(case.worker)
        latencies = []
        for _ in range(CLAIMS_PER_ROUND):
            started = time.perf_counter()
            await claim(case.worker)
            latencies.append((time.perf_counter() - started) * 1000)
        # Asked on the pool's connection the claims just used (asyncpg hands back the most
        # recently released one): how PostgreSQL planned the claim's prepared statement.
        rows = await connections.get("default").execute_query_dict(
            "SELECT statement, custom_plans, generic_plans FROM pg_prepared_statements"
        )
        for row in rows:
            if "FOR UPDATE" in row["statement"].upper():
                case.custom_plans += row["custom_plans"]
                case.generic_plans += row["generic_plans"]
    case.latencies_ms += latencies
    case.round_p50s.append(statistics.median(latencies))


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    return _text(str(value))


def substitute(query: str, values: list[Any]) -> str:
    return re.sub(r"\$(\d+)", lambda match: literal(values[int(match.group(1)) - 1]), query)


def claim_statement(seen: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """The statement that picks the job: the one that locks it, else the first SELECT on jobs."""
    for query, values in seen:
        if "FOR UPDATE" in query.upper():
            return query, values
    for query, values in seen:
        if query.lstrip().upper().startswith("SELECT") and '"jobs"' in query:
            return query, values
    raise SystemExit("no statement selecting a job was captured from tortoise.db_client")


async def explain(case: Case) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim's statement, as captured from one real
    claim_next: with its parameters substituted (a custom plan), and as a generic plan."""
    assert case.worker is not None
    async with open_database(case.url):
        with capture_sql(propagate=False) as statements:
            await claim(case.worker)
    query, values = claim_statement(
        [(statement.text, list(statement.parameters or [])) for statement in statements]
    )
    case.claim_sql = query + (f"  -- parameters {values!r}" if values else "")
    connection = await asyncpg.connect(asyncpg_url(case.url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {substitute(query, values)}")
            case.plan = [row[0] for row in rows]
            if values:
                await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await connection.execute(f"PREPARE bench_claim AS {query}")
                arguments = ", ".join(literal(value) for value in values)
                rows = await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_claim({arguments})"
                )
                case.generic_plan = [row[0] for row in rows]
                await connection.execute("DEALLOCATE bench_claim")
        except asyncpg.PostgresError as error:
            case.generic_plan = case.generic_plan or [f"(could not explain: {error})"]
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


def latest_migration() -> str:
    names = sorted(path.stem for path in (MIGRATIONS_LOCATION / "models").glob("[0-9]*_*.py"))
    return names[-1] if names else "(none)"


def report(cases: list[Case]) -> dict[str, Any]:
    small, large = cases
    ratio = statistics.median(large.latencies_ms) / statistics.median(small.latencies_ms)
    round_ratios = sorted(b / a for a, b in zip(small.round_p50s, large.round_p50s, strict=True))
    print()
    print(f"{'case':>6} {'queued':>9} {'finished':>9} {'claims':>7}"
          f" {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}")  # fmt: skip
    results: dict[str, Any] = {}
    for case in cases:
        cut = percentiles(case.latencies_ms)
        print(
            f"{case.name:>6} {case.queued:>9,} {FINISHED:>9,} {len(case.latencies_ms):>7}"
            f" {cut['p50']:>7.2f} {cut['p90']:>7.2f} {cut['p99']:>7.2f}"
        )
        results[case.name] = {
            "queued": case.queued,
            "finished": FINISHED,
            "claims": len(case.latencies_ms),
            **{name: round(value, 3) for name, value in cut.items()},
            "mean": round(statistics.fmean(case.latencies_ms), 3),
            "round_p50s": [round(value, 3) for value in case.round_p50s],
            "load_seconds": round(case.load_seconds, 1),
            "columns_filled_by_type": case.filled_by_type,
            "claim_plans_on_timed_connections": {
                "custom": case.custom_plans,
                "generic": case.generic_plans,
            },
            "claim_sql": case.claim_sql,
            "plan": case.plan,
            "generic_plan": case.generic_plan,
        }
    verdict = "met" if ratio <= GOAL else "NOT met"
    print(
        f"p50(200k) / p50(1k) = {ratio:.2f} (per round: median"
        f" {statistics.median(round_ratios):.2f}, {round_ratios[0]:.2f}..{round_ratios[-1]:.2f});"
        f" goal <= {GOAL}: {verdict}"
    )
    for case in cases:
        print(
            f"{case.name}: the claim's prepared statement ran {case.custom_plans} custom and"
            f" {case.generic_plans} generic plans on the timed connections"
        )
    print(f"\nclaim statement: {small.claim_sql}")
    for case in cases:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS), {case.name} ({case.queued:,} queued):")
        print("\n".join(f"  {line}" for line in case.plan))
        print(f"generic plan, {case.name}:")
        print("\n".join(f"  {line}" for line in case.generic_plan))
    return {
        "ratio_p50": round(ratio, 3),
        "round_ratio_median": round(statistics.median(round_ratios), 3),
        "round_ratios": [round(value, 3) for value in round_ratios],
        "goal": GOAL,
        "goal_met": ratio <= GOAL,
        "cases": results,
        "indexes": small.indexes,
    }


async def run() -> int:
    server = postgres_server()
    if not await postgres_reachable(server):
        print(f"PostgreSQL at {server} does not answer: claims skipped")
        return 0
    state = source_state()
    print(machine())
    measured = [
        path
        for path in state["uncommitted"]
        if path.startswith(("service/", "models/", "migrations/"))
    ]
    print(f"source: {state['commit']}")
    print(
        f"uncommitted: {len(state['uncommitted'])} files, in service/, models/, migrations/:"
        f" {', '.join(measured) or 'none'}"
    )
    print(f"latest migration: {latest_migration()}")
    print(
        f"claims: {', '.join(f'{n:,} QUEUED' for n in CASES.values())}, each beside"
        f" {FINISHED:,} finished; {ROUNDS} alternating rounds x {CLAIMS_PER_ROUND} timed claims"
        f" (+{WARMUP_CLAIMS} warm-up) per case",
        flush=True,
    )
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        cases = []
        for name, queued in CASES.items():
            url = await stack.enter_async_context(
                fresh_postgres_database(server, prefix="rendertrack_bench_")
            )
            cases.append(Case(name, queued, url))
        for case in cases:
            await load(case)
        if cases[0].filled_by_type:
            print("  NOT NULL columns filled by type:", ", ".join(cases[0].filled_by_type))
        for number in range(ROUNDS):
            for case in cases if number % 2 == 0 else cases[::-1]:
                await timed_round(case)
            print(
                f"  round {number + 1}: p50 "
                + ", ".join(f"{case.name} {case.round_p50s[-1]:.2f} ms" for case in cases),
                flush=True,
            )
        for case in cases:
            await explain(case)
        summary = report(cases)
        async with open_database(cases[0].url):
            version = await connections.get("default").execute_query_dict("SHOW server_version")
    elapsed = time.perf_counter() - started
    path = write_results(
        "claims",
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "postgres": version[0]["server_version"],
            "source": state,
            "latest_migration": latest_migration(),
            "rounds": ROUNDS,
            "claims_per_round": CLAIMS_PER_ROUND,
            "warmup_claims_per_round": WARMUP_CLAIMS,
            "seconds": round(elapsed, 1),
            **summary,
        },
    )
    print(f"\n{elapsed:.0f} s in all; results in {path}")
    return 0


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m bench claims", file=sys.stderr)
        return 2
    return asyncio.run(run())
