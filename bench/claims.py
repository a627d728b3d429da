"""Scenario 3, claims: 8 concurrent claimers drain a queue of 5,000 jobs, through GraphQL's
`claimJob` and through Nexrender's `GET /api/v1/jobs/pickup`, on a real server; beside it
`@nexrender/server` 1.38.0 on loopback with the same load through its own `/jobs/pickup`.

- rendertrack: a scratch database (PostgreSQL, and SQLite in the full run) with JOBS QUEUED jobs
  written straight into it (bench/rows.py, priority 5, each with the same Nexrender job as its
  render spec), `rendertrack serve` (one process), and a load process (bench/load.py) whose
  CLAIMERS workers each claim until the queue answers empty. Then the same again through the
  REST pickup, on as many new jobs. claimJob asks for what a worker needs
  (`id lease status templatePath dataPath outputPath nexrenderConfig`); the pickup answers the
  whole Nexrender job.
- the peer: a fresh database file, JOBS jobs POSTed to its /api/v1/jobs (not timed), then the
  same drain.
- double claims, checked: no job id answered twice (each path), every job claimed, and in the
  database every job RENDERING with lease 1 and attempts 1 (a second claim would have bumped
  both); on the peer every job `picked`. Any double claim fails the scenario (exit 1).

Goals (issue 13): claimJob >= 10x the peer's claims/s, and more still through the pickup.

    python -m bench claims [--quick]            # quick: 200 jobs, PostgreSQL only
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import nexrender, rows, stats, table
from bench.common import finish, machine, postgres_server, postgres_version
from bench.load import run_load
from bench.server import RenderTrack, Unavailable, cpu_seconds, scratch_database
from testkit import npm

PROTOCOLS = {"graphql": "claimJob (GraphQL)", "pickup": "/api/v1/jobs/pickup (REST)"}
GOAL_VS_PEER = 10.0


@dataclass(frozen=True)
class Plan:
    jobs: int
    claimers: int
    databases: tuple[str, ...]


FULL = Plan(jobs=5_000, claimers=8, databases=("postgres", "sqlite"))
QUICK = Plan(jobs=200, claimers=8, databases=("postgres",))


def summarize(result: dict[str, Any], jobs: int) -> dict[str, Any]:
    """Claims/s, latencies and the check of one drain's answers."""
    ids = [claim[1] for claim in result["claims"]]
    claimed = len(ids)
    return {
        "jobs": jobs,
        "claimed": claimed,
        "seconds": result["seconds"],
        "claims_per_second": claimed / result["seconds"] if result["seconds"] else None,
        "latency_ms": stats.latency_summary([claim[3] for claim in result["claims"]])
        if ids
        else None,
        "answered_twice": claimed - len(set(ids)),
        "unclaimed": jobs - len(set(ids)),
        "empty_answers": result["empty_answers"],
        "failure_count": result["failure_count"],
        "failures": result["failures"],
    }


async def drain_rendertrack(
    server: RenderTrack, protocol: str, jobs: int, first: int, claimers: int
) -> dict[str, Any]:
    """JOBS new QUEUED jobs, then `claimers` drain them through `protocol`."""
    database = server.database
    written = await rows.insert_jobs(
        database,
        rows.JobRows(
            owners=[server.accounts["owner"].id],
            queued=jobs,
            first=first,
            priority=5,
            render_spec=nexrender.JOB,
        ),
    )
    await rows.analyze(database)
    cpu = server.cpu()
    result = await run_load(
        {
            "kind": "drain",
            "protocol": protocol,
            "base_url": server.base_url,
            "token": server.accounts["worker"].token,
            "claimers": claimers,
        }
    )
    cpu = server.cpu() - cpu
    outcome = summarize(result, jobs)
    outcome["server_cpu_ms_per_claim"] = (
        1000 * cpu / outcome["claimed"] if outcome["claimed"] else None
    )
    outcome["rows_written_seconds"] = written.seconds
    return outcome


async def rows_claimed_more_than_once(server: RenderTrack, expected: int) -> dict[str, int]:
    """Every job of the database was claimed once: RENDERING, lease 1, attempts 1."""
    found = await rows.fetch(
        server.database,
        "SELECT count(*),"
        " sum(CASE WHEN lease > 1 OR attempts > 1 THEN 1 ELSE 0 END),"
        " sum(CASE WHEN status = 'RENDERING' AND lease = 1 AND attempts = 1 THEN 1 ELSE 0 END)"
        ' FROM "jobs"',
    )
    total, twice, once = (int(value or 0) for value in found[0])
    return {"jobs": total, "claimed_twice": twice, "claimed_once": once, "expected": expected}


async def run_rendertrack(kind: str, plan: Plan, workers: int = 1) -> dict[str, Any]:
    """Both paths on one fresh database of `kind`, one server with `workers` processes."""
    async with scratch_database(kind) as database:
        server = RenderTrack(database, workers=workers)
        await server.create_accounts({"worker": "worker", "owner": "user"})
        drains: dict[str, Any] = {}
        async with server.running():
            for number, protocol in enumerate(PROTOCOLS):
                drains[protocol] = await drain_rendertrack(
                    server, protocol, plan.jobs, 1 + number * plan.jobs, plan.claimers
                )
                line = drains[protocol]
                print(
                    f"  {kind}, {workers} process(es), {PROTOCOLS[protocol]}:"
                    f" {line['claimed']:,} claims in {line['seconds']:.1f} s"
                    f" = {line['claims_per_second']:,.0f} claims/s",
                    flush=True,
                )
            check = await rows_claimed_more_than_once(server, plan.jobs * len(PROTOCOLS))
        return {
            "database": kind,
            "workers": workers,
            "drains": drains,
            "database_check": check,
            "server_log_problems": server.log_problems(),
        }


async def run_peer(plan: Plan) -> dict[str, Any] | None:
    """The same drain on @nexrender/server; None (with a message) without node or npm."""
    try:
        node, folder = nexrender.install()
    except npm.NpmUnavailable as missing:
        print(f"  @nexrender/server skipped: {missing} (it needs Node.js 20+)")
        return None
    with tempfile.TemporaryDirectory(prefix="rendertrack_bench_nexrender_") as directory:
        peer = nexrender.Peer(node, folder, Path(directory))
        await peer.start()
        try:
            submit_seconds = await peer.submit(plan.jobs)
            file_bytes = peer.database_bytes()
            cpu = cpu_seconds(peer.pid)
            result = await run_load(
                {
                    "kind": "drain",
                    "protocol": "pickup",
                    "base_url": peer.base_url,
                    "token": nexrender.SECRET,
                    "claimers": plan.claimers,
                }
            )
            cpu = cpu_seconds(peer.pid) - cpu
            states = await peer.states()
        finally:
            await peer.stop()
    outcome = summarize(result, plan.jobs)
    outcome.update(
        {
            "versions": nexrender.installed_versions(folder),
            "submit_seconds": submit_seconds,
            "database_file_bytes": file_bytes,
            "server_cpu_ms_per_claim": 1000 * cpu / outcome["claimed"]
            if outcome["claimed"]
            else None,
            "states_after": states,
        }
    )
    print(
        f"  @nexrender/server {outcome['versions'].get('@nexrender/server', '?')}:"
        f" {outcome['claimed']:,} claims in {outcome['seconds']:.1f} s"
        f" = {outcome['claims_per_second']:,.0f} claims/s"
        f" ({plan.jobs:,} jobs POSTed in {submit_seconds:.1f} s, file {file_bytes / 1e6:.1f} MB)",
        flush=True,
    )
    return outcome


def double_claims(databases: list[dict[str, Any]], peer: dict[str, Any] | None) -> int:
    """Double (or missing) claims found anywhere: 0 is the only good answer."""
    found = 0
    for outcome in databases:
        for drain in outcome["drains"].values():
            found += drain["answered_twice"] + drain["unclaimed"]
        check = outcome["database_check"]
        found += check["claimed_twice"] + (check["expected"] - check["claimed_once"])
    if peer is not None:
        found += peer["answered_twice"] + peer["unclaimed"]
        found += sum(count for state, count in peer["states_after"].items() if state != "picked")
    return found


def row_of(
    server: str, database: str, path: str, outcome: dict[str, Any], peer_rate: float | None
) -> list[str]:
    latency = outcome["latency_ms"] or {}
    return [
        server,
        database,
        path,
        table.count(outcome["jobs"], "jobs"),
        table.per_second(outcome["claims_per_second"], "claims"),
        table.ms(latency.get("p50")),
        table.ms(latency.get("p99")),
        table.ms(outcome.get("server_cpu_ms_per_claim"), 2),
        table.count(outcome["answered_twice"] + outcome["unclaimed"]),
        table.times(stats.ratio(outcome["claims_per_second"], peer_rate)),
    ]


HEADERS = [
    "server",
    "database",
    "path",
    "jobs",
    "claims/s (8 claimers)",
    "p50",
    "p99",
    "server CPU / claim",
    "double or missed claims",
    "vs @nexrender/server",
]


def goals_of(
    databases: list[dict[str, Any]], peer: dict[str, Any] | None, quick: bool
) -> list[dict[str, Any]]:
    note = "quick sizes" if quick else ""
    peer_rate = None if peer is None else peer["claims_per_second"]
    goals = []
    for outcome in databases:
        graphql = outcome["drains"]["graphql"]["claims_per_second"]
        pickup = outcome["drains"]["pickup"]["claims_per_second"]
        where = f"{outcome['database']}, {outcome['workers']} process(es)"
        goals.append(
            stats.goal(
                f"claims, {where}: claimJob claims/s / @nexrender/server's",
                stats.ratio(graphql, peer_rate),
                "x",
                ">=",
                GOAL_VS_PEER,
                judged=peer_rate is not None,
                note=note if peer_rate is not None else "no peer: node or npm missing",
            )
        )
        goals.append(
            stats.goal(
                f"claims, {where}: /api/v1/jobs/pickup claims/s / claimJob's",
                stats.ratio(pickup, graphql),
                "x",
                ">=",
                1.0,
                note=note,
            )
        )
    return goals


async def run(plan: Plan, quick: bool) -> int:
    started = time.perf_counter()
    print(machine())
    print(
        f"claims: {plan.claimers} concurrent claimers, {plan.jobs:,} queued jobs a drain;"
        f" databases: {', '.join(plan.databases)}",
        flush=True,
    )
    databases = []
    for kind in plan.databases:
        try:
            databases.append(await run_rendertrack(kind, plan))
        except Unavailable as missing:
            print(f"  {kind} skipped: {missing}")
    peer = await run_peer(plan)
    peer_rate = None if peer is None else peer["claims_per_second"]
    table_rows = [
        row_of("rendertrack", outcome["database"], PROTOCOLS[protocol], drain, peer_rate)
        for outcome in databases
        for protocol, drain in outcome["drains"].items()
    ]
    if peer is not None:
        version = peer["versions"].get("@nexrender/server", "?")
        table_rows.append(
            row_of(f"@nexrender/server {version}", "JSON file", "/api/v1/jobs/pickup", peer, None)
        )
    found = double_claims(databases, peer)
    finish(
        "claims",
        quick=quick,
        headers=HEADERS,
        rows=table_rows,
        goals=goals_of(databases, peer, quick),
        data={
            "plan": plan.__dict__,
            "postgres": await _postgres_version(plan),
            "databases": databases,
            "peer": peer,
            "double_claims": found,
        },
        started=started,
        notes=[f"double or missed claims, checked in answers and in the databases: {found}"],
    )
    return 1 if found or not databases else 0


async def _postgres_version(plan: Plan) -> str | None:
    if "postgres" not in plan.databases:
        return None
    try:
        return await postgres_version(postgres_server())
    except OSError:
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench claims")
    parser.add_argument("--quick", action="store_true", help="200 jobs, PostgreSQL only")
    args = parser.parse_args(argv)
    return asyncio.run(run(QUICK if args.quick else FULL, args.quick))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
