"""Scenario 4, the jobs page: `jobs(first: 50)` with owners and queue positions, requests per
second, beside a plain Starlette JSON endpoint (bench/plain_server.py) answering the same 50 jobs
through the same ORM and service reads.

Both servers run at once on one scratch database (PostgreSQL, and SQLite in the full run) holding
QUEUED and finished jobs of two owners, written straight into it (bench/rows.py); the QUEUED ones
are the newest, so the page is all queued jobs and every queue position is computed. The caller is
an ADMIN (sees every job and its owner). Before timing, both answers are compared: the same ids
in the same order, the same owners and positions.

A load process (bench/load.py) runs CONCURRENCY clients, each sending the request again and again
(closed loop) for SECONDS; rounds alternate between the two endpoints (ABBA...) so the machine's
drift hits both alike. The ratio is the median of the per-round ratios GraphQL / plain. The server
CPU per request is each server's CPU time over its rounds.

Goal (issue 13): GraphQL >= 50% of the plain endpoint's rate.

    python -m bench page [--quick]     # quick: 200 queued + 1,000 finished jobs, PostgreSQL only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from bench import rows, stats, table
from bench.common import ROOT, finish, machine
from bench.load import run_load
from bench.server import (
    Database,
    RenderTrack,
    Unavailable,
    cpu_seconds,
    free_port,
    scratch_database,
    stop_process,
)

PAGE_QUERY = (
    "query Page { jobs(first: 50) { edges { node {"
    " id projectName outputName status priority progress queuedAt createdAt queuePosition"
    " user { id email name } } } } }"
)
GOAL = 0.5


@dataclass(frozen=True)
class Plan:
    queued: int
    finished: int
    rounds: int  # per endpoint
    seconds: float  # per round
    concurrency: int
    databases: tuple[str, ...]


FULL = Plan(
    queued=1_000,
    finished=10_000,
    rounds=6,
    seconds=5.0,
    concurrency=8,
    databases=("postgres", "sqlite"),
)
QUICK = Plan(
    queued=200, finished=1_000, rounds=2, seconds=1.5, concurrency=8, databases=("postgres",)
)


class PlainServer:
    """bench/plain_server.py in a process of its own, on the same database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.port = free_port()
        self.log = database.folder / "plain.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jobs"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @contextlib.asynccontextmanager
    async def running(self, token: str) -> AsyncIterator[PlainServer]:
        env = {"RENDERTRACK_DATABASE_URL": self.database.url, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.plain_server",
                "--port",
                str(self.port),
                cwd=ROOT,
                env={**_inherited(), **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient(timeout=2) as client:
                while True:
                    if self.process.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the plain server did not start:\n{self.log_text()}")
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await client.get(self.url, headers=_bearer(token))
                        if answer.status_code == 200:
                            break
                    await asyncio.sleep(0.2)
            yield self
        finally:
            await stop_process(self.process)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _inherited() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def same_page(server: RenderTrack, plain: PlainServer, token: str) -> dict[str, Any]:
    """Both endpoints' answers, compared: ids in order, owners, positions."""
    async with httpx.AsyncClient(headers=_bearer(token), timeout=30) as http:
        graphql = (await http.post(server.http_url, json={"query": PAGE_QUERY})).json()
        plain_answer = (await http.get(plain.url)).json()
    nodes = [edge["node"] for edge in graphql["data"]["jobs"]["edges"]]

    def key(job: dict[str, Any]) -> tuple[Any, ...]:
        owner = job["user"] or {}
        return (job["id"], job["queuePosition"], owner.get("email"), job["status"])

    same = [key(job) for job in nodes] == [key(job) for job in plain_answer["jobs"]]
    return {
        "same": same,
        "jobs": len(nodes),
        "with_position": sum(1 for job in nodes if job["queuePosition"] is not None),
        "owners": len({(job["user"] or {}).get("id") for job in nodes}),
    }


async def measure(kind: str, plan: Plan) -> dict[str, Any]:
    async with scratch_database(kind) as database:
        server = RenderTrack(database)
        accounts = await server.create_accounts({"admin": "admin", "owner": "user"})
        written = await rows.insert_jobs(
            database,
            rows.JobRows(
                owners=[accounts["owner"].id, accounts["admin"].id],
                queued=plan.queued,
                finished=plan.finished,
            ),
        )
        await rows.analyze(database)
        token = accounts["admin"].token
        plain = PlainServer(database)
        async with server.running(), plain.running(token):
            check = await same_page(server, plain, token)
            print(
                f"  {kind}: {written.rows:,} jobs written in {written.seconds:.1f} s; page of"
                f" {check['jobs']} jobs, {check['with_position']} with a queue position,"
                f" {check['owners']} owners; same answer from both: {check['same']}",
                flush=True,
            )
            endpoints = {
                "graphql": (
                    {
                        "method": "POST",
                        "url": server.http_url,
                        "headers": _bearer(token),
                        "json": {"query": PAGE_QUERY},
                        "graphql": True,
                    },
                    server.cpu,
                ),
                "plain": (
                    {"method": "GET", "url": plain.url, "headers": _bearer(token)},
                    lambda: cpu_seconds(plain.pid),
                ),
            }
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in endpoints}
            names = list(endpoints)
            for number in range(plan.rounds):
                for name in names if number % 2 == 0 else names[::-1]:
                    request, cpu = endpoints[name]
                    before = cpu()
                    result = await run_load(
                        {
                            "kind": "rate",
                            "rounds": [
                                {
                                    "name": name,
                                    "request": request,
                                    "seconds": plan.seconds,
                                    "concurrency": plan.concurrency,
                                }
                            ],
                        }
                    )
                    outcome = result["rounds"][0]
                    outcome["server_cpu_seconds"] = cpu() - before
                    rounds[name].append(outcome)
                print(
                    f"  round {number + 1}: "
                    + ", ".join(
                        f"{name} {_rate(rounds[name][-1]):,.0f} requests/s" for name in names
                    ),
                    flush=True,
                )
            problems = server.log_problems()
    return {"database": kind, "rows": written.rows, "check": check, **_summary(rounds, problems)}


def _rate(outcome: dict[str, Any]) -> float:
    return outcome["count"] / outcome["seconds"] if outcome["seconds"] else 0.0


def _summary(rounds: dict[str, list[dict[str, Any]]], problems: list[str]) -> dict[str, Any]:
    endpoints = {}
    for name, outcomes in rounds.items():
        latencies = [value for outcome in outcomes for value in outcome["latencies"]]
        count = sum(outcome["count"] for outcome in outcomes)
        seconds = sum(outcome["seconds"] for outcome in outcomes)
        cpu = sum(outcome["server_cpu_seconds"] for outcome in outcomes)
        endpoints[name] = {
            "requests": count,
            "requests_per_second": count / seconds if seconds else None,
            "round_rates": [_rate(outcome) for outcome in outcomes],
            "latency_ms": stats.latency_summary(latencies) if latencies else None,
            "server_cpu_ms_per_request": 1000 * cpu / count if count else None,
            "failures": sum(outcome["failure_count"] for outcome in outcomes),
            "failure_examples": [f for outcome in outcomes for f in outcome["failures"]][:5],
        }
    ratio = stats.median_ratio(
        endpoints["graphql"]["round_rates"], endpoints["plain"]["round_rates"]
    )
    return {"endpoints": endpoints, "ratio": ratio, "server_log_problems": problems}


NAMES = {"graphql": "GraphQL jobs(first: 50)", "plain": "plain Starlette JSON"}


def report_rows(outcome: dict[str, Any], plan: Plan) -> list[list[str]]:
    lines = []
    for name, endpoint in outcome["endpoints"].items():
        latency = endpoint["latency_ms"] or {}
        ratio = outcome["ratio"] if name == "graphql" else None
        lines.append(
            [
                outcome["database"],
                NAMES[name],
                table.count(outcome["rows"], "jobs"),
                table.per_second(endpoint["requests_per_second"], "requests"),
                table.ms(latency.get("p50")),
                table.ms(latency.get("p99")),
                table.ms(endpoint["server_cpu_ms_per_request"], 2),
                table.count(endpoint["failures"]),
                "-"
                if not ratio
                else f"{ratio['median']:.2f}x ({ratio['low']:.2f}..{ratio['high']:.2f})",
            ]
        )
    return lines


HEADERS = [
    "database",
    "endpoint",
    "table",
    f"requests/s ({QUICK.concurrency} clients)",
    "p50",
    "p99",
    "server CPU / request",
    "failures",
    "vs plain (median of rounds)",
]


async def run(plan: Plan, quick: bool) -> int:
    started = time.perf_counter()
    print(machine())
    print(
        f"page: {plan.rounds} rounds x {plan.seconds:g} s per endpoint, {plan.concurrency}"
        f" clients; {plan.queued:,} QUEUED + {plan.finished:,} finished jobs",
        flush=True,
    )
    outcomes = []
    for kind in plan.databases:
        try:
            outcomes.append(await measure(kind, plan))
        except Unavailable as missing:
            print(f"  {kind} skipped: {missing}")
    goals = [
        stats.goal(
            f"page, {outcome['database']}: GraphQL requests/s / plain endpoint's",
            outcome["ratio"].get("median"),
            "x",
            ">=",
            GOAL,
            note="quick sizes" if quick else "",
        )
        for outcome in outcomes
    ]
    finish(
        "page",
        quick=quick,
        headers=HEADERS,
        rows=[line for outcome in outcomes for line in report_rows(outcome, plan)],
        goals=goals,
        data={"plan": plan.__dict__, "query": PAGE_QUERY, "databases": outcomes},
        started=started,
    )
    same = all(outcome["check"]["same"] for outcome in outcomes)
    failed = any(e["failures"] for outcome in outcomes for e in outcome["endpoints"].values())
    if not same:
        print("the two endpoints did not answer the same page")
    return 0 if outcomes and same and not failed else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench page")
    parser.add_argument("--quick", action="store_true", help="small table, PostgreSQL only")
    args = parser.parse_args(argv)
    return asyncio.run(run(QUICK if args.quick else FULL, args.quick))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
