"""Scenario 6, the queue at scale: does handing out the next job stay fast when the table is
large? Claim latency with 1,000 and with 200,000 QUEUED jobs, both beside the same 800,000
finished ones (70% COMPLETED, 20% FAILED, 10% CANCELLED), and the claim's plan. PostgreSQL only.

Each case has a scratch database of its own, loaded once with the same rows (bench/rows.py;
the 1k case's queue is the first 1,000 of the 200k case's) and then `VACUUM (ANALYZE)`, as the
autovacuum of a long-lived table would have done. Two databases rather than one whose jobs move
between QUEUED and finished between rounds: moving 199,000 rows back and forth would leave dead
tuples behind, so the rounds would not measure the same table.

- **through the server** (the issue's measure): both servers (`rendertrack serve`, one process
  each) run at once; a load process (bench/load.py) claims through `claimJob` over HTTP, one
  claim at a time, in rounds that alternate between the two cases (1k then 200k, then 200k
  then 1k, ...) so the machine's drift hits both alike; each round claims WARMUP untimed, then
  PER_ROUND timed.
- **in the harness's process** (the claim's transaction alone, without HTTP or GraphQL, more
  sensitive to the database's part): `service.jobs.claim_next(worker)` in rounds as above, each
  on fresh connections (so prepared statements start over).
- **the plan**: the SQL of one claim_next is captured from the "tortoise.db_client" logger
  (DEBUG); the statement that picks the job (the one with FOR UPDATE) runs with its parameters
  substituted under EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back, and as a
  generic plan (what a prepared statement may switch to after five runs); the database's count
  of custom and generic plans on the timed connections says which one the service ran.

A claimed job stays RENDERING: the queue stays large, and the rows handed out stay in the table
as they would. Goal (issue 13): p50(200k) / p50(1k) <= 1.3 (both measures are judged).

    python -m bench scale [--quick]   # quick: 200 and 2,000 QUEUED beside 10,000 finished
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import asyncpg
from tortoise import connections

from app.database import open_database
from bench import rows, stats, table
from bench.common import finish, machine, postgres_server, postgres_version, source_state
from bench.load import run_load
from bench.server import Database, RenderTrack, Unavailable, scratch_database
from domain.policy import Actor
from domain.status import JobStatus
from migrations import MIGRATIONS_LOCATION
from service import jobs, users
from testkit.postgres import asyncpg_url
from testkit.sql_log import capture_sql

GOAL = 1.3


@dataclass(frozen=True)
class Plan:
    finished: int
    cases: dict[str, int]  # name: QUEUED jobs (the first is the short queue)
    server_rounds: int
    service_rounds: int
    warmup: int  # untimed claims at the start of each round (past the five custom plans)
    per_round: int


FULL = Plan(
    finished=800_000,
    cases={"1k": 1_000, "200k": 200_000},
    server_rounds=8,
    service_rounds=12,
    warmup=8,
    per_round=25,
)
QUICK = Plan(
    finished=10_000,
    cases={"200": 200, "2k": 2_000},
    server_rounds=2,
    service_rounds=2,
    warmup=6,
    per_round=15,
)


@dataclass
class Case:
    name: str
    queued: int
    database: Database
    server: RenderTrack
    worker: Actor | None = None
    load_seconds: float = 0.0
    filled_by_type: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    server_latencies_ms: list[float] = field(default_factory=list)
    server_round_p50s: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    round_p50s: list[float] = field(default_factory=list)
    custom_plans: int = 0
    generic_plans: int = 0
    claim_sql: str = ""
    plan: list[str] = field(default_factory=list)
    generic_plan: list[str] = field(default_factory=list)


async def load(case: Case, plan: Plan) -> None:
    accounts = await case.server.create_accounts({"worker": "worker", "owner": "user"})
    written = await rows.insert_jobs(
        case.database,
        rows.JobRows(
            owners=[accounts["owner"].id],
            finished=plan.finished,
            queued=case.queued,
            worker=accounts["worker"].id,
        ),
    )
    await rows.analyze(case.database)
    case.load_seconds = written.seconds
    case.filled_by_type = written.filled_by_type
    found = await rows.fetch(
        case.database, "SELECT indexdef FROM pg_indexes WHERE tablename = 'jobs' ORDER BY indexname"
    )
    case.indexes = [str(row[0]) for row in found]
    counts = await rows.job_counts(case.database)
    print(
        f"  {case.name}: {written.rows:,} rows loaded in {case.load_seconds:.1f} s: "
        + ", ".join(f"{status} {n:,}" for status, n in sorted(counts.items())),
        flush=True,
    )


async def claim(worker: Actor) -> None:
    job = await jobs.claim_next(worker)
    assert job is not None and job.status == JobStatus.RENDERING, job


async def service_round(case: Case, plan: Plan) -> None:
    """Claims in this process through the use case, on fresh connections."""
    async with open_database(case.database.url):
        if case.worker is None:
            case.worker = users.actor_of(await users.get_user_by_email("worker@bench.example"))
        for _ in range(plan.warmup):
            await claim(case.worker)
        latencies = []
        for _ in range(plan.per_round):
            started = time.perf_counter()
            await claim(case.worker)
            latencies.append((time.perf_counter() - started) * 1000)
        # Asked on the pool's connection the claims just used (asyncpg hands back the most
        # recently released one): how PostgreSQL planned the claim's prepared statement.
        found = await connections.get("default").execute_query_dict(
            "SELECT statement, custom_plans, generic_plans FROM pg_prepared_statements"
        )
        for row in found:
            if "FOR UPDATE" in row["statement"].upper():
                case.custom_plans += row["custom_plans"]
                case.generic_plans += row["generic_plans"]
    case.latencies_ms += latencies
    case.round_p50s.append(statistics.median(latencies))


async def server_rounds(cases: list[Case], plan: Plan) -> list[str]:
    result = await run_load(
        {
            "kind": "sequential",
            "targets": {
                case.name: {
                    "url": case.server.http_url,
                    "token": case.server.accounts["worker"].token,
                }
                for case in cases
            },
            "rounds": plan.server_rounds,
            "warmup": plan.warmup,
            "per_round": plan.per_round,
        }
    )
    for case in cases:
        for latencies in result["rounds"][case.name]:
            milliseconds = [1000 * value for value in latencies]
            case.server_latencies_ms += milliseconds
            case.server_round_p50s.append(statistics.median(milliseconds))
    return result["failures"]


# ---------------------------------------------------------------------------------------------
# The plan


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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
    async with open_database(case.database.url):
        assert case.worker is not None
        with capture_sql(propagate=False) as statements:
            await claim(case.worker)
    query, values = claim_statement(
        [(statement.text, list(statement.parameters or [])) for statement in statements]
    )
    case.claim_sql = query + (f"  -- parameters {values!r}" if values else "")
    connection = await asyncpg.connect(asyncpg_url(case.database.url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            found = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {substitute(query, values)}"
            )
            case.plan = [row[0] for row in found]
            if values:
                await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await connection.execute(f"PREPARE bench_claim AS {query}")
                arguments = ", ".join(literal(value) for value in values)
                found = await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_claim({arguments})"
                )
                case.generic_plan = [row[0] for row in found]
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


# ---------------------------------------------------------------------------------------------
# Report


HEADERS = [
    "case",
    "QUEUED",
    "finished",
    "claims (server)",
    "server p50",
    "server p90",
    "server p99",
    "claims (in process)",
    "in-process p50",
    "in-process p90",
    "in-process p99",
]


def report(cases: list[Case], plan: Plan, quick: bool) -> dict[str, Any]:
    small, large = cases
    results: dict[str, Any] = {}
    table_rows = []
    for case in cases:
        server = stats.percentiles(case.server_latencies_ms)
        service = stats.percentiles(case.latencies_ms)
        table_rows.append(
            [
                case.name,
                table.count(case.queued),
                table.count(plan.finished),
                table.count(len(case.server_latencies_ms)),
                table.ms(server["p50"], 2),
                table.ms(server["p90"], 2),
                table.ms(server["p99"], 2),
                table.count(len(case.latencies_ms)),
                table.ms(service["p50"], 2),
                table.ms(service["p90"], 2),
                table.ms(service["p99"], 2),
            ]
        )
        results[case.name] = {
            "queued": case.queued,
            "finished": plan.finished,
            "server": {
                "claims": len(case.server_latencies_ms),
                **{name: round(value, 3) for name, value in server.items()},
                "round_p50s": [round(value, 3) for value in case.server_round_p50s],
            },
            "in_process": {
                "claims": len(case.latencies_ms),
                **{name: round(value, 3) for name, value in service.items()},
                "round_p50s": [round(value, 3) for value in case.round_p50s],
            },
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
    server_ratio = statistics.median(large.server_latencies_ms) / statistics.median(
        small.server_latencies_ms
    )
    service_ratio = statistics.median(large.latencies_ms) / statistics.median(small.latencies_ms)
    note = "quick sizes" if quick else ""
    goals = [
        stats.goal(
            f"scale: claimJob through the server, p50({large.name}) / p50({small.name})",
            server_ratio,
            "x",
            "<=",
            GOAL,
            note=note,
        ),
        stats.goal(
            f"scale: claim_next in process, p50({large.name}) / p50({small.name})",
            service_ratio,
            "x",
            "<=",
            GOAL,
            note=note,
        ),
    ]
    rounds = {
        "server": stats.median_ratio(large.server_round_p50s, small.server_round_p50s),
        "in_process": stats.median_ratio(large.round_p50s, small.round_p50s),
    }
    notes = [
        f"per-round ratios, {where}: median {found['median']:.2f}, range"
        f" {found['low']:.2f}..{found['high']:.2f}"
        for where, found in rounds.items()
        if found
    ]
    notes += [
        f"{case.name}: the claim's prepared statement ran {case.custom_plans} custom and"
        f" {case.generic_plans} generic plans on the timed connections"
        for case in cases
    ]
    notes.append(f"claim statement: {small.claim_sql}")
    for case in cases:
        notes.append(f"EXPLAIN (ANALYZE, BUFFERS), {case.name} ({case.queued:,} QUEUED):")
        notes += [f"    {line}" for line in case.plan]
        notes.append(f"generic plan, {case.name}:")
        notes += [f"    {line}" for line in case.generic_plan]
    notes.append("")
    return {
        "rows": table_rows,
        "goals": goals,
        "notes": notes,
        "data": {
            "ratio_p50_server": round(server_ratio, 3),
            "ratio_p50_in_process": round(service_ratio, 3),
            "round_ratios": rounds,
            "cases": results,
            "indexes": small.indexes,
        },
    }


async def run(plan: Plan, quick: bool) -> int:
    started = time.perf_counter()
    state = source_state()
    print(machine())
    measured = [
        path
        for path in state["uncommitted"]
        if path.startswith(("service/", "models/", "migrations/"))
    ]
    print(f"source: {state['commit']}; uncommitted in service/, models/, migrations/:"
          f" {', '.join(measured) or 'none'}; latest migration: {latest_migration()}")  # fmt: skip
    print(
        f"scale: {', '.join(f'{n:,} QUEUED' for n in plan.cases.values())}, each beside"
        f" {plan.finished:,} finished; {plan.server_rounds} alternating rounds through the server"
        f" and {plan.service_rounds} in process, {plan.per_round} timed claims each"
        f" (+{plan.warmup} warm-up)",
        flush=True,
    )
    try:
        async with AsyncExitStack() as stack:
            cases = []
            for name, queued in plan.cases.items():
                database = await stack.enter_async_context(scratch_database("postgres"))
                cases.append(Case(name, queued, database, RenderTrack(database, name=name)))
            for case in cases:
                await load(case, plan)
            for case in cases:
                await stack.enter_async_context(case.server.running())
            failures = await server_rounds(cases, plan)
            print(
                "  through the server: p50 "
                + ", ".join(
                    f"{case.name} {statistics.median(case.server_latencies_ms):.2f} ms"
                    for case in cases
                ),
                flush=True,
            )
            for number in range(plan.service_rounds):
                for case in cases if number % 2 == 0 else cases[::-1]:
                    await service_round(case, plan)
            print(
                "  in process: p50 "
                + ", ".join(
                    f"{case.name} {statistics.median(case.latencies_ms):.2f} ms" for case in cases
                ),
                flush=True,
            )
            for case in cases:
                await explain(case)
            problems = [line for case in cases for line in case.server.log_problems()]
    except Unavailable as missing:
        print(f"scale skipped: {missing}")
        return 1
    summary = report(cases, plan, quick)
    finish(
        "scale",
        quick=quick,
        headers=HEADERS,
        rows=summary["rows"],
        goals=summary["goals"],
        data={
            "plan": plan.__dict__,
            "postgres": await postgres_version(postgres_server()),
            "latest_migration": latest_migration(),
            **summary["data"],
            "load_failures": failures,
            "server_log_problems": problems,
        },
        started=started,
        notes=summary["notes"],
    )
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale")
    parser.add_argument(
        "--quick", action="store_true", help="200 and 2,000 QUEUED beside 10,000 finished"
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(QUICK if args.quick else FULL, args.quick))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
