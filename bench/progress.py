"""Progress-report throughput with live events on, against the same run with events off.

Every progress report is one transaction with one compare-and-set UPDATE. With the PostgreSQL
bus it also sends NOTIFY, which takes a global lock at commit (STACK-NOTES): this measures what
that costs. Variants run interleaved, round after round, on the same database, so the machine's
drift hits them alike; the result is each variant's median rate as a ratio to the baseline's.

    python -m bench progress                     # SQLite, and PostgreSQL if it answers
    python -m bench progress sqlite              # one database only (sqlite or postgres)
    RENDERTRACK_BENCH_POSTGRES_URL=postgres://user@host:5432/db python -m bench progress
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from app.database import open_database
from app.migrations import apply_migrations
from bench.common import machine, postgres_reachable, postgres_server
from domain.policy import Actor
from models import Job
from service import jobs, users
from service.bus import create_bus
from service.events import RecordingPublisher, set_publisher
from testkit.jobs import valid_submission
from testkit.postgres import fresh_postgres_database

ROUNDS = 7
REPORTS_PER_ROUND = 300
CONCURRENT_WORKERS = 4
DATABASES = ("sqlite", "postgres")

Variant = Callable[[str], Awaitable[float]]


async def rendering_jobs(owner: Actor, worker: Actor, count: int) -> list[str]:
    submission = valid_submission(project_name="Bench")
    ids = []
    for _ in range(count):
        await jobs.submit_job(owner, submission)
        claimed = await jobs.claim_next(worker)
        assert claimed is not None
        ids.append(claimed.id)
    return ids


async def report_round(job_ids: list[str], worker: Actor) -> float:
    """Reports/s: CONCURRENT_WORKERS workers, each walking its own job's progress upwards."""
    per_worker = REPORTS_PER_ROUND // len(job_ids)

    async def walk(job_id: str) -> None:
        for step in range(per_worker):
            await jobs.report_progress(job_id, 1 + step % 99, actor=worker)
        await Job.filter(id=job_id).update(progress=0)  # the next round starts low again

    started = time.perf_counter()
    await asyncio.gather(*(walk(job_id) for job_id in job_ids))
    return per_worker * len(job_ids) / (time.perf_counter() - started)


@asynccontextmanager
async def publishing(kind: str, url: str, job_ids: list[str]) -> AsyncIterator[None]:
    """baseline: events recorded in memory only; bus: the live bus of this database;
    bus+subscriber: the live bus with one subscriber following every job."""
    if kind == "baseline":
        previous = set_publisher(RecordingPublisher())
        try:
            yield
        finally:
            set_publisher(previous)
        return
    bus = create_bus(url)
    await bus.start()
    previous = set_publisher(bus)
    drain: asyncio.Task[None] | None = None
    subscription = None
    if kind == "bus+subscriber":
        subscription = bus.subscribe(lambda event: event.job_id in job_ids, buffer_size=4096)

        async def consume() -> None:
            async for _ in subscription:  # type: ignore[union-attr]
                pass

        drain = asyncio.create_task(consume())
    try:
        yield
    finally:
        set_publisher(previous)
        if subscription is not None:
            subscription.close()
        if drain is not None:
            drain.cancel()
        await bus.stop()


async def measure(url: str) -> dict[str, list[float]]:
    await apply_migrations(url)
    async with open_database(url):
        owner = users.actor_of((await users.create_user(f"o{time.time_ns()}@example.com")).user)
        worker = users.actor_of(
            (await users.create_user(f"w{time.time_ns()}@example.com", role="worker")).user
        )
        job_ids = await rendering_jobs(owner, worker, CONCURRENT_WORKERS)
        rates: dict[str, list[float]] = {"baseline": [], "bus": [], "bus+subscriber": []}
        for _ in range(ROUNDS):
            for kind in rates:
                async with publishing(kind, url, job_ids):
                    rates[kind].append(await report_round(job_ids, worker))
        return rates


def summary(name: str, rates: dict[str, list[float]]) -> list[str]:
    base = statistics.median(rates["baseline"])
    lines = [f"{name}: baseline {base:,.0f} progress reports/s (median of {ROUNDS} rounds)"]
    for kind, values in rates.items():
        if kind == "baseline":
            continue
        ratios = sorted(
            value / base_value for value, base_value in zip(values, rates["baseline"], strict=True)
        )
        rate, ratio = statistics.median(values), statistics.median(ratios)
        lines.append(
            f"  {kind:15} {rate:8,.0f}/s  ratio {ratio:.2f}"
            f" (rounds {ratios[0]:.2f}..{ratios[-1]:.2f})"
        )
    return lines


async def run_one(database: str) -> int:
    if database == "sqlite":
        with tempfile.TemporaryDirectory() as scratch:
            url = f"sqlite://{Path(scratch) / 'bench.sqlite3'}"
            print("\n".join(summary("SQLite (in-process bus)", await measure(url))))
        return 0
    server = postgres_server()
    if not await postgres_reachable(server):
        print(f"PostgreSQL at {server} does not answer: skipped")
        return 0
    async with fresh_postgres_database(server, prefix="rendertrack_bench_") as url:
        print("\n".join(summary("PostgreSQL (LISTEN/NOTIFY bus)", await measure(url))))
    return 0


def main(argv: list[str]) -> int:
    """No argument: both databases, each in a process of its own (Tortoise cannot switch
    dialects within one); `sqlite` or `postgres`: that one, in this process."""
    if argv:
        if argv[0] not in DATABASES:
            print(f"usage: python -m bench progress [{'|'.join(DATABASES)}]", file=sys.stderr)
            return 2
        return asyncio.run(run_one(argv[0]))
    print(machine())
    print(f"{ROUNDS} rounds x {REPORTS_PER_ROUND} reports, {CONCURRENT_WORKERS} concurrent workers")
    sys.stdout.flush()
    for database in DATABASES:
        finished = subprocess.run(
            [sys.executable, "-m", "bench", "progress", database], check=False
        )
        if finished.returncode:
            return finished.returncode
    return 0
