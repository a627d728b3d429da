"""Scenario 5, memory per idle subscriber: the server's RSS with 2,000 open `jobUpdated`
subscriptions, minus its RSS at rest, over 2,000; then its RSS again after they all disconnect
abruptly.

A real server (`rendertrack serve`, one process) on a scratch PostgreSQL database with JOBS
QUEUED jobs of one owner (bench/rows.py). Subscribers live in another process
(bench/fanout_client.py): one websocket each (graphql-transport-ws), one `jobUpdated(id)` each,
spread over the jobs, opened 50 at a time; a subscriber counts once it has its SNAPSHOT. Nothing
changes while they are open: they are idle.

- **rest**: after a warm-up (WARMUP subscribers opened and dropped, so first-use costs such as
  imports and caches are not counted per subscriber), the server's RSS once it settled.
- **open**: RSS with SUBSCRIBERS open, after SETTLE seconds. Per subscriber = (open - rest) /
  SUBSCRIBERS.
- **after**: the subscriber process is killed (SIGKILL: every socket drops at once, no close
  frame); once the server holds no more sockets than at rest, and SETTLE seconds later, its RSS.

Two variants, each on a fresh server process: subscribers that offer permessage-deflate (as
browsers do) and subscribers that do not. RSS is read from /proc/<pid>/statm; where it lies, at
each reading, from /proc/<pid>/smaps: glibc's heap (malloc's blocks), other anonymous memory
(CPython's object allocator keeps its blocks of up to 512 bytes in 1 MiB arenas mapped there),
and files (code).

Goals (issue 13): <= 30 KiB per idle subscriber; back within 10% of rest after the disconnects.

    python -m bench memory [--quick]     # quick: 50 subscribers
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import rows, stats, table
from bench.common import finish, machine
from bench.server import RenderTrack, Unavailable, scratch_database
from bench.subscribers import Subscribers

GOAL_KIB = 30.0
GOAL_AFTER = 1.10
DRAIN_TIMEOUT = 60.0
VARIANTS = {"deflate": True, "no compression": False}
CLIENT_NUMBERS = itertools.count()


@dataclass(frozen=True)
class Plan:
    subscribers: int
    jobs: int
    warmup: int
    settle: float  # seconds before each reading


FULL = Plan(subscribers=2_000, jobs=100, warmup=50, settle=3.0)
QUICK = Plan(subscribers=50, jobs=10, warmup=10, settle=1.0)


MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
MAPPING_KINDS = ("heap", "anonymous", "files", "other")


def rss_by_mapping(pids: list[int]) -> dict[str, int]:
    """RSS in KiB by kind of mapping: glibc's heap, other anonymous memory, files, the rest
    (stacks, the vDSO)."""
    found = dict.fromkeys(MAPPING_KINDS, 0)
    for pid in pids:
        kind = "other"
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if MAPPING.match(line):
                fields = line.split(maxsplit=5)
                name = fields[5].strip() if len(fields) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif not name:
                    kind = "anonymous"
                else:
                    kind = "files" if name.startswith("/") else "other"
            elif line.startswith("Rss:"):
                found[kind] += int(line.split()[1])
    return found


async def open_subscribers(
    server: RenderTrack, job_ids: list[str], count: int, compression: bool
) -> tuple[Subscribers, dict[str, Any]]:
    clients = Subscribers(server.database.folder, next(CLIENT_NUMBERS))
    timeout = 60.0 + count * 0.05
    await clients.start(
        {
            "url": server.ws_url,
            "token": server.accounts["owner"].token,
            "jobs": [job_ids[n % len(job_ids)] for n in range(count)],
            "timeout": timeout,
            "connect_concurrency": 50,
            "compression": compression,
        }
    )
    return clients, await clients.receive(timeout * 2)


async def drop(server: RenderTrack, clients: Subscribers, sockets_at_rest: int) -> float:
    """Kills the subscriber process; answers the seconds until the server let go of its
    sockets."""
    started = time.perf_counter()
    await clients.stop()
    for _ in range(int(DRAIN_TIMEOUT / 0.1)):  # polled: /proc has no event to wait on
        if server.sockets() <= sockets_at_rest:
            break
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


async def variant(server: RenderTrack, job_ids: list[str], plan: Plan, compression: bool) -> dict:
    async with server.running():
        warm, _ = await open_subscribers(server, job_ids, plan.warmup, compression)
        sockets_at_rest = server.sockets() - plan.warmup
        await drop(server, warm, sockets_at_rest)
        await asyncio.sleep(plan.settle)
        rest = server.rss_kib()
        mappings = {"rest": rss_by_mapping(server.pids())}
        clients, ready = await open_subscribers(server, job_ids, plan.subscribers, compression)
        await asyncio.sleep(plan.settle)
        opened = server.rss_kib()
        mappings["open"] = rss_by_mapping(server.pids())
        sockets_open = server.sockets()
        client_rss = clients.rss_kib()
        released = await drop(server, clients, sockets_at_rest)
        await asyncio.sleep(plan.settle)
        after = server.rss_kib()
        mappings["after"] = rss_by_mapping(server.pids())
        sockets_after = server.sockets()
        problems = server.log_problems()
    per_subscriber = (opened - rest) / plan.subscribers
    return {
        "subscribers": ready["ready"],
        "open_seconds": ready["seconds"],
        "rss_rest_kib": rest,
        "rss_open_kib": opened,
        "rss_after_kib": after,
        "per_subscriber_kib": per_subscriber,
        "after_vs_rest": after / rest if rest else None,
        "rss_by_mapping_kib": mappings,
        "sockets": {"rest": sockets_at_rest, "open": sockets_open, "after": sockets_after},
        "seconds_to_release_sockets": released,
        "subscriber_process_rss_kib": client_rss,
        "server_log_problems": problems,
    }


async def measure(plan: Plan) -> dict[str, Any]:
    async with scratch_database("postgres") as database:
        server = RenderTrack(database)
        accounts = await server.create_accounts({"owner": "user"})
        await rows.insert_jobs(
            database, rows.JobRows(owners=[accounts["owner"].id], queued=plan.jobs)
        )
        job_ids = [
            str(row[0]) for row in await rows.fetch(database, 'SELECT id FROM "jobs" ORDER BY id')
        ]
        outcomes = {}
        for name, compression in VARIANTS.items():
            outcomes[name] = await variant(server, job_ids, plan, compression)
            found = outcomes[name]
            print(
                f"  {name}: rest {found['rss_rest_kib'] / 1024:.1f} MiB, with"
                f" {found['subscribers']:,} open {found['rss_open_kib'] / 1024:.1f} MiB"
                f" ({found['per_subscriber_kib']:.1f} KiB each), after the drop"
                f" {found['rss_after_kib'] / 1024:.1f} MiB",
                flush=True,
            )
    return outcomes


HEADERS = [
    "subscribers offer",
    "subscribers",
    "RSS at rest",
    "RSS with them open",
    "per idle subscriber",
    "RSS after the abrupt drop",
    "after / rest",
    "sockets released in",
]


def mapping_note(name: str, mappings: dict[str, dict[str, int]]) -> str:
    """Where the RSS lies at rest / open / after."""

    def readings(kind: str) -> str:
        return " / ".join(f"{mappings[phase][kind] / 1024:.1f}" for phase in mappings) + " MiB"

    return (
        f"{name}, RSS at rest / open / after: glibc's heap {readings('heap')}, other anonymous"
        f" memory (CPython's object arenas) {readings('anonymous')}"
    )


async def run(plan: Plan, quick: bool) -> int:
    started = time.perf_counter()
    print(machine())
    print(f"memory: {plan.subscribers:,} idle jobUpdated subscribers over {plan.jobs} jobs")
    try:
        outcomes = await measure(plan)
    except Unavailable as missing:
        print(f"memory skipped: {missing}")
        return 1
    note = "quick sizes" if quick else ""
    notes = [mapping_note(name, found["rss_by_mapping_kib"]) for name, found in outcomes.items()]
    table_rows = [
        [
            name,
            table.count(found["subscribers"]),
            table.mib(found["rss_rest_kib"] / 1024),
            table.mib(found["rss_open_kib"] / 1024),
            table.kib(found["per_subscriber_kib"]),
            table.mib(found["rss_after_kib"] / 1024),
            table.times(found["after_vs_rest"]),
            table.seconds(found["seconds_to_release_sockets"]),
        ]
        for name, found in outcomes.items()
    ]
    goals = []
    for name, found in outcomes.items():
        goals.append(
            stats.goal(
                f"memory, subscribers offering {name}: RSS per idle subscriber",
                found["per_subscriber_kib"],
                "KiB",
                "<=",
                GOAL_KIB,
                note=note,
            )
        )
        goals.append(
            stats.goal(
                f"memory, subscribers offering {name}: RSS after the drop / at rest",
                found["after_vs_rest"],
                "x",
                "<=",
                GOAL_AFTER,
                note=note,
            )
        )
    finish(
        "memory",
        quick=quick,
        headers=HEADERS,
        rows=table_rows,
        goals=goals,
        data={"plan": plan.__dict__, "variants": outcomes},
        started=started,
        notes=notes,
    )
    complete = all(found["subscribers"] == plan.subscribers for found in outcomes.values())
    return 0 if complete else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench memory")
    parser.add_argument("--quick", action="store_true", help="50 subscribers")
    args = parser.parse_args(argv)
    return asyncio.run(run(QUICK if args.quick else FULL, args.quick))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
