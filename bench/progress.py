"""Scenario 2, progress throughput: progress reports per second through GraphQL, 8 concurrent
workers, with 100 subscribers listening; beside it the same UPDATE sent straight to PostgreSQL
with asyncpg (the floor: what the database alone allows).

A real server (`rendertrack serve`, one process) on a scratch PostgreSQL database. Each round
has jobs of its own: WORKERS x JOBS_PER_WORKER QUEUED jobs (written straight into the database,
bench/rows.py) claimed by the harness through `claimJob` (so they are RENDERING, each with its
lease); each variant of each round gets jobs of its own (a report never moves progress back).
SUBSCRIBERS `jobUpdated` subscribers (bench/fanout_client.py, in a process of their own) follow
the round's jobs, spread evenly, so every report is heard. Then:

- **GraphQL**: a load process (bench/load.py) runs WORKERS workers at once, each reporting
  progress 1, 2, ..., STEPS on each of its jobs in turn (`reportProgress(id, progress, lease)`,
  one HTTP request each, waiting for the answer): reports/s over the whole round. The
  subscribers must then have every change (checked).
- **floor**: the same number of reports on as many jobs as the compare-and-set UPDATE a report
  sends (bench/load.py FLOOR_UPDATE; checked against the statement captured from Tortoise's
  log while one report runs in this process), alone, autocommit, from WORKERS asyncpg
  connections at once: no HTTP, no GraphQL, no transaction around it, no history row, no
  NOTIFY.

Rounds alternate (GraphQL then floor, floor then GraphQL, ...). The ratio is the median of the
per-round ratios GraphQL / floor. Goal (issue 13): >= 40% of the floor's rate.

    python -m bench progress [--quick]    # PostgreSQL only (the floor is asyncpg)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app.database import open_database
from bench import rows, stats, table
from bench.common import finish, machine, postgres_server, postgres_version
from bench.load import CLAIM, FLOOR_UPDATE, run_load
from bench.server import Database, RenderTrack, Unavailable, scratch_database
from bench.subscribers import Subscribers
from service import jobs, users
from testkit.sql_log import capture_sql

GOAL = 0.4
CLIENT_NUMBERS = itertools.count()


@dataclass(frozen=True)
class Plan:
    workers: int
    jobs_per_worker: int
    steps: int  # reports per job: progress 1..steps (< 100: 100 means COMPLETED)
    subscribers: int
    rounds: int  # of each variant


FULL = Plan(workers=8, jobs_per_worker=4, steps=98, subscribers=100, rounds=3)
QUICK = Plan(workers=8, jobs_per_worker=1, steps=25, subscribers=20, rounds=2)


async def service_update(database: Database, worker_email: str) -> str:
    """The UPDATE that a progress report sends, captured from Tortoise's log while one report
    runs in this process (on a job claimed for it)."""
    async with open_database(database.url):
        worker = users.actor_of(await users.get_user_by_email(worker_email))
        job = await jobs.claim_next(worker)
        assert job is not None
        with capture_sql(propagate=False) as statements:
            await jobs.report_progress(job.id, 1, actor=worker)
    updates = [s.one_line for s in statements if s.one_line.startswith('UPDATE "jobs"')]
    if len(updates) != 1:
        raise SystemExit(f"a progress report sent {len(updates)} UPDATEs of jobs: {updates}")
    return updates[0]


async def claim_all(server: RenderTrack, count: int) -> list[tuple[str, int]]:
    """`count` claims through claimJob: (job id, lease) each."""
    token = server.accounts["worker"].token
    claimed = []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for _ in range(count):
            body = (await http.post(server.http_url, json={"query": CLAIM})).json()
            job = body["data"]["claimJob"]
            claimed.append((job["id"], job["lease"]))
    return claimed


def assignments(jobs: list[tuple[str, int]], plan: Plan) -> list[list[tuple[str, int]]]:
    return [
        jobs[n * plan.jobs_per_worker : (n + 1) * plan.jobs_per_worker] for n in range(plan.workers)
    ]


async def graphql_round(
    server: RenderTrack, jobs: list[tuple[str, int]], plan: Plan
) -> dict[str, Any]:
    """Subscribers on the round's jobs, then every worker's reports through GraphQL."""
    listener = Subscribers(server.database.folder, next(CLIENT_NUMBERS))
    followed = [jobs[n % len(jobs)][0] for n in range(plan.subscribers)]
    timeout = 60.0 + plan.subscribers * 0.1
    try:
        await listener.start(
            {
                "url": server.ws_url,
                "token": server.accounts["owner"].token,
                "jobs": followed,
                "timeout": timeout,
                "connect_concurrency": 50,
            }
        )
        ready = await listener.receive(timeout * 2)
        cpu = server.cpu()
        result = await run_load(
            {
                "kind": "progress",
                "url": server.http_url,
                "token": server.accounts["worker"].token,
                "assignments": assignments(jobs, plan),
                "steps": list(range(1, plan.steps + 1)),
            }
        )
        cpu = server.cpu() - cpu
        finish_at = {job: sequence + plan.steps for job, sequence in ready["snapshots"].items()}
        await listener.send({"finish": finish_at, "timeout": 30.0})
        heard = await listener.receive(timeout * 2)
        await listener.send({"close": True})
        await listener.receive(timeout)
        records = listener.records()
    finally:
        await listener.stop()
    delivered = sum(len(record["received"]) for record in records)
    return {
        "count": result["count"],
        "seconds": result["seconds"],
        "rate": result["count"] / result["seconds"],
        "server_cpu_ms_per_report": 1000 * cpu / result["count"] if result["count"] else None,
        "failure_count": result["failure_count"],
        "failures": result["failures"],
        "subscribers": len(records),
        "deliveries": delivered,
        "every_subscriber_heard_every_change": bool(heard["received"]),
    }


async def floor_round(server: RenderTrack, jobs: list[tuple[str, int]], plan: Plan) -> dict:
    result = await run_load(
        {
            "kind": "floor",
            "postgres_url": server.database.url,
            "assignments": assignments(jobs, plan),
            "steps": list(range(1, plan.steps + 1)),
        }
    )
    return {
        "count": result["count"],
        "seconds": result["seconds"],
        "rate": result["count"] / result["seconds"],
        "updates_matching_no_row": result["updates_matching_no_row"],
    }


async def measure(plan: Plan) -> dict[str, Any]:
    per_round = plan.workers * plan.jobs_per_worker
    async with scratch_database("postgres") as database:
        server = RenderTrack(database)
        accounts = await server.create_accounts({"worker": "worker", "owner": "user"})
        await rows.insert_jobs(
            database,
            rows.JobRows(
                owners=[accounts["owner"].id], queued=2 * per_round * plan.rounds + 1, priority=5
            ),
        )
        await rows.analyze(database)
        captured = await service_update(database, accounts["worker"].email)
        if captured != " ".join(FLOOR_UPDATE.split()):
            raise SystemExit(
                "the floor no longer sends the UPDATE a progress report sends: update"
                f" bench/load.py FLOOR_UPDATE\n  report: {captured}\n  floor:  {FLOOR_UPDATE}"
            )
        variants: dict[str, list[dict[str, Any]]] = {"graphql": [], "floor": []}
        async with server.running():
            for number in range(plan.rounds):
                order = ("graphql", "floor") if number % 2 == 0 else ("floor", "graphql")
                for variant in order:
                    jobs = await claim_all(server, per_round)
                    if variant == "graphql":
                        variants[variant].append(await graphql_round(server, jobs, plan))
                    else:
                        variants[variant].append(await floor_round(server, jobs, plan))
                print(
                    f"  round {number + 1}: GraphQL {variants['graphql'][-1]['rate']:,.0f}"
                    f" reports/s, floor {variants['floor'][-1]['rate']:,.0f} updates/s",
                    flush=True,
                )
            problems = server.log_problems()
    return {"variants": variants, "server_log_problems": problems, "update": captured}


def summary(variants: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    graphql = [outcome["rate"] for outcome in variants["graphql"]]
    floor = [outcome["rate"] for outcome in variants["floor"]]
    return {
        "graphql_reports_per_second": statistics.median(graphql),
        "floor_updates_per_second": statistics.median(floor),
        "ratio": stats.median_ratio(graphql, floor),
        "graphql_failures": sum(outcome["failure_count"] for outcome in variants["graphql"]),
        "every_subscriber_heard_every_change": all(
            outcome["every_subscriber_heard_every_change"] for outcome in variants["graphql"]
        ),
        "floor_updates_matching_no_row": sum(
            outcome["updates_matching_no_row"] for outcome in variants["floor"]
        ),
    }


HEADERS = [
    "path",
    "workers",
    "reports a round",
    "subscribers",
    "rate (median of rounds)",
    "rounds",
    "server CPU / report",
    "vs floor (median of rounds)",
]


async def run(plan: Plan, quick: bool) -> int:
    started = time.perf_counter()
    print(machine())
    reports = plan.workers * plan.jobs_per_worker * plan.steps
    print(
        f"progress: {plan.workers} workers, {reports:,} reports a round ({plan.jobs_per_worker}"
        f" job(s) each x {plan.steps} steps), {plan.subscribers} subscribers, {plan.rounds}"
        " rounds of each",
        flush=True,
    )
    try:
        outcome = await measure(plan)
    except Unavailable as missing:
        print(f"progress skipped: {missing}")
        return 1
    variants = outcome["variants"]
    result = summary(variants)
    ratio = result["ratio"]
    cpu = [
        o["server_cpu_ms_per_report"] for o in variants["graphql"] if o["server_cpu_ms_per_report"]
    ]
    table_rows = [
        [
            "reportProgress (GraphQL over HTTP)",
            str(plan.workers),
            table.count(reports),
            str(plan.subscribers),
            table.per_second(result["graphql_reports_per_second"], "reports"),
            ", ".join(f"{o['rate']:,.0f}/s" for o in variants["graphql"]),
            table.ms(statistics.median(cpu) if cpu else None, 2),
            f"{ratio['median']:.2f}x ({ratio['low']:.2f}..{ratio['high']:.2f})",
        ],
        [
            "the UPDATE alone (asyncpg, autocommit)",
            str(plan.workers),
            table.count(reports),
            "-",
            table.per_second(result["floor_updates_per_second"], "updates"),
            ", ".join(f"{o['rate']:,.0f}/s" for o in variants["floor"]),
            "-",
            "-",
        ],
    ]
    goals = [
        stats.goal(
            "progress, postgres: GraphQL reports/s / the floor's updates/s",
            ratio["median"],
            "x",
            ">=",
            GOAL,
            note="quick sizes" if quick else "",
        )
    ]
    finish(
        "progress",
        quick=quick,
        headers=HEADERS,
        rows=table_rows,
        goals=goals,
        data={
            "plan": plan.__dict__,
            "postgres": await postgres_version(postgres_server()),
            **result,
            "rounds": variants,
            "update": outcome["update"],
            "server_log_problems": outcome["server_log_problems"],
        },
        started=started,
        notes=[
            f"every subscriber heard every change: {result['every_subscriber_heard_every_change']};"
            f" GraphQL failures: {result['graphql_failures']}; floor UPDATEs that matched no row:"
            f" {result['floor_updates_matching_no_row']}"
        ],
    )
    good = (
        result["every_subscriber_heard_every_change"]
        and not result["graphql_failures"]
        and not result["floor_updates_matching_no_row"]
    )
    return 0 if good else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench progress")
    parser.add_argument("--quick", action="store_true", help="small rounds")
    args = parser.parse_args(argv)
    return asyncio.run(run(QUICK if args.quick else FULL, args.quick))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
