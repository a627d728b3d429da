"""Scenario 7, several processes: scenario 3 (claims) and scenario 1 (update to screen) with
`rendertrack serve --workers 2` on PostgreSQL, beside the same with one process, to show that the
ceiling moves with processes.

- **claims**: as bench/claims.py (8 concurrent claimers drain JOBS queued jobs through
  `claimJob`, then as many through `/api/v1/jobs/pickup`; double claims checked), on a fresh
  database with one server process, then on another with two.
- **screen**: as bench/fanout.py (`python -m bench screen postgres`), one job with 0, 100 and
  1,000 subscribers (quick: 0 and 100), with one server process, then with two. With two, the
  subscribers' websockets land on either process, and a change committed by one reaches the
  other's subscribers through LISTEN/NOTIFY.

The server's CPU is that of all its processes (uvicorn's supervisor and workers). Statements are
not counted with two processes (bench/serve.py counts in its own process only).

Goal (issue 13): two processes >= 1.6x one process on claims (claimJob; the pickup is judged
too).

    python -m bench processes [--quick]    # quick: 200 jobs, 100 subscribers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import claims, stats, table
from bench.common import finish, machine
from bench.server import Unavailable

GOAL = 1.6
COUNTS = (1, 2)


async def screen(workers: int, quick: bool) -> dict[str, Any] | None:
    """bench/fanout.py's cases in a process of its own (Tortoise keeps one dialect per
    process), its results handed back through a file."""
    with tempfile.TemporaryDirectory(prefix="rendertrack_processes_") as directory:
        into = Path(directory) / "screen.json"
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench",
            "screen",
            "postgres",
            "--plan",
            "processes-quick" if quick else "processes",
            "--workers",
            str(workers),
            "--into",
            str(into),
        )
        if await child.wait():
            return None
        return json.loads(into.read_text())


HEADERS = [
    "measure",
    "path or case",
    "1 process",
    "2 processes",
    "2 / 1",
]


def claims_rows(found: dict[int, dict[str, Any]]) -> list[list[str]]:
    lines = []
    for protocol, name in claims.PROTOCOLS.items():
        one = found[1]["drains"][protocol]
        two = found[2]["drains"][protocol]
        lines.append(
            [
                f"claims/s, {claims.QUICK.claimers} claimers",
                name,
                table.per_second(one["claims_per_second"], "claims"),
                table.per_second(two["claims_per_second"], "claims"),
                table.times(stats.ratio(two["claims_per_second"], one["claims_per_second"])),
            ]
        )
        lines.append(
            [
                "server CPU / claim",
                name,
                table.ms(one["server_cpu_ms_per_claim"], 2),
                table.ms(two["server_cpu_ms_per_claim"], 2),
                table.times(
                    stats.ratio(two["server_cpu_ms_per_claim"], one["server_cpu_ms_per_claim"])
                ),
            ]
        )
    return lines


def screen_rows(found: dict[int, dict[str, Any] | None]) -> list[list[str]]:
    lines = []
    if not found.get(1) or not found.get(2):
        return lines
    by_case = {
        workers: {case["case"]: case for case in outcome["cases"]}  # type: ignore[index]
        for workers, outcome in found.items()
    }
    for name, one in by_case[1].items():
        two = by_case[2].get(name)
        if two is None:
            continue
        if one.get("latency_ms"):
            for cut in ("p50", "p99"):
                lines.append(
                    [
                        f"update to screen, {cut}",
                        name,
                        table.ms(one["latency_ms"][cut]),
                        table.ms(two["latency_ms"][cut]),
                        # a latency from the answer can be negative (fanout.py): no ratio then
                        table.times(
                            stats.ratio(two["latency_ms"][cut], one["latency_ms"][cut])
                            if min(two["latency_ms"][cut], one["latency_ms"][cut]) > 0
                            else None
                        ),
                    ]
                )
        lines.append(
            [
                "server CPU / change",
                name,
                table.ms(one["server_cpu_ms_per_event"], 2),
                table.ms(two["server_cpu_ms_per_event"], 2),
                table.times(
                    stats.ratio(two["server_cpu_ms_per_event"], one["server_cpu_ms_per_event"])
                ),
            ]
        )
    return lines


async def run(quick: bool) -> int:
    started = time.perf_counter()
    plan = claims.QUICK if quick else claims.FULL
    print(machine())
    print(
        f"processes: claims ({plan.jobs:,} jobs, {plan.claimers} claimers) and update to screen,"
        " with one server process and with two (PostgreSQL)",
        flush=True,
    )
    found_claims: dict[int, dict[str, Any]] = {}
    try:
        for workers in COUNTS:
            found_claims[workers] = await claims.run_rendertrack("postgres", plan, workers)
    except Unavailable as missing:
        print(f"processes skipped: {missing}")
        return 1
    found_screen = {workers: await screen(workers, quick) for workers in COUNTS}
    note = "quick sizes" if quick else ""
    goals = [
        stats.goal(
            f"processes: {name} claims/s, 2 processes / 1",
            stats.ratio(
                found_claims[2]["drains"][protocol]["claims_per_second"],
                found_claims[1]["drains"][protocol]["claims_per_second"],
            ),
            "x",
            ">=",
            GOAL,
            note=note,
        )
        for protocol, name in claims.PROTOCOLS.items()
    ]
    found = claims.double_claims(list(found_claims.values()), None)
    finish(
        "processes",
        quick=quick,
        headers=HEADERS,
        rows=claims_rows(found_claims) + screen_rows(found_screen),
        goals=goals,
        data={
            "claims_plan": plan.__dict__,
            "claims": {str(workers): outcome for workers, outcome in found_claims.items()},
            "screen": {str(workers): outcome for workers, outcome in found_screen.items()},
            "double_claims": found,
        },
        started=started,
        notes=[f"double or missed claims, checked in answers and in the databases: {found}"],
    )
    return 1 if found or not all(found_screen.values()) else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench processes")
    parser.add_argument("--quick", action="store_true", help="200 jobs, 100 subscribers")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.quick))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
