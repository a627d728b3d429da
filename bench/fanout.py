"""Scenario 1, update to screen (`python -m bench screen`, formerly `fanout`): from a committed
change to every subscriber, its cost, and a missed history replayed.

A real server (`rendertrack serve` in a process of its own, bench/server.py, through
bench/serve.py which only adds a count of its SQL statements) on a scratch database; subscribers
in another process (bench/fanout_client.py), one websocket each, `jobUpdated(id)` selecting
`kind sequence job { id status progress }`; this process drives the changes and measures.

- **Update to subscriber**: a worker reports progress on a job (`reportProgress` over HTTP), one
  change every PACE seconds. Latency of each (change, subscriber) = the subscriber's receive
  time - the moment the mutation's HTTP response came back (the change had committed by then;
  the request's round trip is reported beside it: the commit lies inside it). Both are
  time.time() on the same machine. Cases: N subscribers on one job; N subscribers spread over
  several jobs (changes go round the jobs); and 1,000 on one job at one change a second, slower
  than the server fans one out, so that no change waits behind the previous one's. Every
  subscriber must get every change's sequence exactly once, in order: checked, and reported.
- **Cost per change**: over the measured changes, the server's CPU time (utime + stime of
  /proc/<pid>/stat, its worker processes included), per change and per delivered message; its
  SQL statements per change (all of them, the mutation's included; one process only); on
  PostgreSQL the CPU of its database backends. N = 0 (no subscriber) is the mutation alone.
- **Replay**: a job with REPLAY changes (appendJobLog by the system, written before the server
  starts); one client subscribes `jobUpdated(id, afterSequence)` from just before them, or
  `jobEvents(after: cursor)`, and the time until it has received all of them is measured.

Goals (issue 13, as issue 10): p99 <= 20 ms at 100 subscribers and <= 50 ms at 1,000 (one
process); a replay of 10,000 in under 2 s.

    python -m bench screen                 # PostgreSQL, then SQLite, each in its own process
    python -m bench screen postgres        # one database (postgres or sqlite)
    python -m bench screen --quick         # 100 on one job, 100 over 10 jobs; PostgreSQL only
    python -m bench screen --workers 2     # the server with two processes (PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import pstats
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import connect

from app.database import open_database
from app.migrations import apply_migrations
from bench import stats
from bench.common import RESULTS_FILE, finish, machine
from bench.server import Database, RenderTrack, Unavailable, cpu_seconds, scratch_database
from bench.stats import percentiles
from bench.subscribers import Subscribers
from domain.status import Role
from models import Job
from service import event_store, jobs, users
from testkit.jobs import valid_submission
from testkit.postgres import asyncpg_url

DATABASES = ("postgres", "sqlite")
PROTOCOL = "graphql-transport-ws"
REPORT = "mutation($id: ID!, $p: Int!) { reportProgress(id: $id, progress: $p) { id progress } }"
REPLAY_JOB = """
subscription($id: ID!, $after: Int) {
  jobUpdated(id: $id, afterSequence: $after) { kind sequence job { id status progress } }
}
"""
REPLAY_EVENTS = """
subscription($after: String) {
  jobEvents(after: $after) { kind sequence cursor job { id status progress } }
}
"""
CLIENT_NUMBERS = itertools.count()


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]  # subscribers on one job (0: the mutation alone)
    spread: tuple[tuple[int, int], ...]  # (subscribers, jobs), changes going round the jobs
    events: int  # measured changes per case (at most 99 - warmup per job: progress < 100)
    spread_events: int
    warmup: int  # changes before the measured ones, not counted
    pace: float  # seconds between two changes
    replay: int  # changes a replay client missed (0: no replay)
    replays: int  # runs of each replay
    # (subscribers, seconds between changes, changes): one job, changes slower than the
    # server delivers them, so that no change waits for the previous one's fan-out
    slow: tuple[tuple[int, float, int], ...] = ()
    databases: tuple[str, ...] = DATABASES


FULL = Plan(
    sizes=(0, 1, 100, 1000),
    spread=((1000, 100),),
    events=80,
    spread_events=200,
    warmup=5,
    pace=0.1,
    replay=10_000,
    replays=3,
    slow=((1000, 1.0, 30),),
)
QUICK = Plan(
    sizes=(0, 100),
    spread=((100, 10),),
    events=15,
    spread_events=20,
    warmup=3,
    pace=0.05,
    replay=200,
    replays=1,
    databases=("postgres",),
)
# Scenario 7 (bench/processes.py): one job, one process then two.
PROCESSES = Plan(
    sizes=(0, 100, 1000),
    spread=(),
    events=80,
    spread_events=0,
    warmup=5,
    pace=0.1,
    replay=0,
    replays=0,
    databases=("postgres",),
)
PROCESSES_QUICK = replace(QUICK, sizes=(0, 100), spread=(), events=10, replay=0, replays=0)

# Where the server's time goes: a short run under cProfile.
PROFILE = Plan(
    sizes=(0, 100),
    spread=(),
    events=60,
    spread_events=0,
    warmup=5,
    pace=0.1,
    replay=2_000,
    replays=1,
)
PLANS = {
    "full": FULL,
    "quick": QUICK,
    "processes": PROCESSES,
    "processes-quick": PROCESSES_QUICK,
    "profile": PROFILE,
}


@dataclass(frozen=True)
class Options:
    clients: int = 1  # subscriber processes
    compression: bool = True  # offer permessage-deflate, as browsers and most clients do
    profile: Path | None = None  # run the server under cProfile, its stats written here
    workers: int = 1  # server processes


# Goals of issue 13 (as issue 10's): reported against, not asserted.
GOALS_P99_MS = {100: 20.0, 1000: 50.0}
GOAL_REPLAY_SECONDS = 2.0
GOAL_REPLAY_EVENTS = 10_000


@dataclass
class Case:
    name: str
    subscribers: int
    jobs: list[str]
    events: int
    pace: float


# ---------------------------------------------------------------------------------------------
# Setup, in this process, before the server starts


async def prepare(url: str, plan: Plan) -> dict[str, Any]:
    """Users, RENDERING jobs for every case, and the replay job with its history."""
    await apply_migrations(url)
    async with open_database(url):
        stamp = time.time_ns()
        watcher = await users.create_user(f"watcher{stamp}@example.com", "Watcher")
        reader = await users.create_user(f"reader{stamp}@example.com", "Reader")
        worker_issued = await users.create_user(f"worker{stamp}@example.com", "Worker", Role.WORKER)
        owner = users.actor_of(watcher.user)
        worker = users.actor_of(worker_issued.user)

        async def rendering(actor: Any) -> str:
            await jobs.submit_job(actor, valid_submission(project_name="Fanout"))
            claimed = await jobs.claim_next(worker)
            assert claimed is not None
            return claimed.id

        cases: list[Case] = []
        for size in plan.sizes:
            job = await rendering(owner)
            cases.append(Case(f"{size} on 1 job", size, [job], plan.events, plan.pace))
        for size, count in plan.spread:
            ids = [await rendering(owner) for _ in range(count)]
            cases.append(Case(f"{size} on {count} jobs", size, ids, plan.spread_events, plan.pace))
        for size, pace, count in plan.slow:
            job = await rendering(owner)
            cases.append(Case(f"{size} on 1 job, {1 / pace:g}/s", size, [job], count, pace))

        replay_job = await rendering(users.actor_of(reader.user))
        before = (await Job.get(id=replay_job)).sequence
        last_event = (await event_store.job_events(replay_job, before - 1, 1))[0]
        started = time.perf_counter()
        for n in range(plan.replay):
            await jobs.append_log(replay_job, [f"frame {n}"], actor=None)
        written = time.perf_counter() - started
        after = (await Job.get(id=replay_job)).sequence
        assert after == before + plan.replay, (before, after)
    return {
        "watcher": watcher.token,
        "reader": reader.token,
        "worker": worker_issued.token,
        "cases": cases,
        "replay_job": replay_job,
        "replay_after_sequence": before,
        "replay_after_cursor": last_event.cursor,
        "replay_write_seconds": written,
    }


class Backends:
    """The CPU of the server's PostgreSQL backends (the pool's and the LISTEN connection),
    read from /proc (same machine); nothing for SQLite."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: asyncpg.Connection | None = None

    async def open(self) -> None:
        if self.url.startswith("postgres"):
            self.connection = await asyncpg.connect(asyncpg_url(self.url), timeout=5)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def cpu(self) -> dict[int, float] | None:
        if self.connection is None:
            return None
        rows = await self.connection.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {row["pid"]: cpu_seconds(row["pid"]) for row in rows}


def backend_seconds(
    before: dict[int, float] | None, after: dict[int, float] | None
) -> float | None:
    if before is None or after is None:
        return None
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# ---------------------------------------------------------------------------------------------
# Update to subscriber


async def drive(
    http: httpx.AsyncClient, url: str, steps: list[tuple[str, int]], pace: float
) -> list[tuple[str, int, float, float]]:
    """One change every `pace` seconds; (job, progress, sent, answered) for each."""
    done = []
    started = time.perf_counter()
    for n, (job_id, progress) in enumerate(steps):
        delay = started + n * pace - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.time()
        answer = await http.post(
            url, json={"query": REPORT, "variables": {"id": job_id, "p": progress}}
        )
        answered = time.time()
        body = answer.json()
        if answer.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"reportProgress failed: {answer.status_code} {body}")
        done.append((job_id, progress, sent, answered))
    return done


def steps_of(case: Case, count: int, offset: int) -> list[tuple[str, int]]:
    """`count` changes going round the case's jobs; each job's progress offset+1, offset+2..."""
    return [(case.jobs[n % len(case.jobs)], offset + 1 + n // len(case.jobs)) for n in range(count)]


async def run_case(
    case: Case,
    plan: Plan,
    server: RenderTrack,
    backends: Backends,
    tokens: dict[str, Any],
    scratch: Path,
    options: Options,
) -> dict[str, Any]:
    clients = options.clients
    warm = steps_of(case, plan.warmup, 0)
    measured = steps_of(case, case.events, -(-plan.warmup // len(case.jobs)))
    assert max(progress for _, progress in measured) < 100
    assignment = [case.jobs[n % len(case.jobs)] for n in range(case.subscribers)]
    started_clients: list[Subscribers] = []
    timeout = 60.0 + case.subscribers * 0.1
    result: dict[str, Any] = {
        "case": case.name,
        "subscribers": case.subscribers,
        "jobs": len(case.jobs),
        "events": case.events,
    }
    try:
        snapshots: dict[str, int] = {}
        if case.subscribers:
            groups = [assignment[n::clients] for n in range(min(clients, case.subscribers))]
            for group in groups:
                client = Subscribers(scratch, next(CLIENT_NUMBERS))
                started_clients.append(client)
                await client.start(
                    {
                        "url": server.ws_url,
                        "token": tokens["watcher"],
                        "jobs": group,
                        "timeout": timeout,
                        "connect_concurrency": 50,
                        "compression": options.compression,
                    }
                )
            for client in started_clients:
                ready = await client.receive(timeout * 2)
                snapshots.update(ready["snapshots"])
                result.setdefault("connect_seconds", []).append(ready["seconds"])
        http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {tokens['worker']}"}, timeout=10
        )
        async with http:
            await drive(http, server.http_url, warm, case.pace)
            await asyncio.sleep(max(0.5, case.pace * 3))
            statements_before = await server.statements()
            cpu_before, backends_before = server.cpu(), await backends.cpu()
            clients_before = [client.cpu() for client in started_clients]
            window = time.perf_counter()
            done = await drive(http, server.http_url, measured, case.pace)
            received = True
            if started_clients:
                per_job = {
                    job_id: sum(1 for j, _ in warm + measured if j == job_id)
                    for job_id in case.jobs
                }
                finish = {job_id: snapshots[job_id] + count for job_id, count in per_job.items()}
                for client in started_clients:
                    await client.send({"finish": finish, "timeout": timeout})
                for client in started_clients:
                    received = (await client.receive(timeout * 2))["received"] and received
            else:
                await asyncio.sleep(case.pace)
            window = time.perf_counter() - window
            cpu_after, backends_after = server.cpu(), await backends.cpu()
            clients_after = [client.cpu() for client in started_clients]
            statements_after = await server.statements()
        records: list[dict[str, Any]] = []
        for client in started_clients:
            await client.send({"close": True})
        for client in started_clients:
            await client.receive(timeout)
            records.extend(json.loads(client.results.read_text()))
    finally:
        for client in started_clients:
            await client.stop()

    server_cpu = cpu_after - cpu_before
    deliveries = sum(1 for job_id in assignment for j, _ in measured if j == job_id)
    result.update(
        {
            "window_seconds": window,
            "all_received": received,
            "server_cpu_seconds": server_cpu,
            "server_cpu_ms_per_event": 1000 * server_cpu / case.events,
            "server_cpu_us_per_message": 1e6 * server_cpu / deliveries if deliveries else None,
            "postgres_cpu_ms_per_event": _per(
                backend_seconds(backends_before, backends_after), case.events, 1000
            ),
            "client_cpu_ms_per_event": _per(
                sum(
                    after - before
                    for before, after in zip(clients_before, clients_after, strict=True)
                ),
                case.events,
                1000,
            )
            if started_clients
            else None,
            "statements_per_event": (
                (statements_after - statements_before) / case.events
                if statements_before is not None and statements_after is not None
                else None
            ),
            "mutation_round_trip_ms": percentiles([1000 * (a - s) for _, _, s, a in done])
            if len(done) > 1
            else None,
            "deliveries": deliveries,
        }
    )
    if case.subscribers:
        result.update(latencies(records, warm, done, snapshots))
    return result


def add_fanout_cost(cases: list[dict[str, Any]]) -> None:
    """Each case's server CPU per delivered message beyond that of the same change with no
    subscriber (the mutation itself): what one more subscriber costs."""
    alone = next((case for case in cases if case["subscribers"] == 0), None)
    for case in cases:
        if alone is None or not case["deliveries"]:
            case["fanout_cpu_us_per_message"] = None
            continue
        extra = case["server_cpu_ms_per_event"] - alone["server_cpu_ms_per_event"]
        case["fanout_cpu_us_per_message"] = 1000 * extra * case["events"] / case["deliveries"]


def _per(value: float | None, count: int, scale: float) -> float | None:
    return None if value is None or not count else scale * value / count


def latencies(
    records: list[dict[str, Any]],
    warm: list[tuple[str, int]],
    done: list[tuple[str, int, float, float]],
    snapshots: dict[str, int],
) -> dict[str, Any]:
    """Latencies of the measured changes, and the check that every subscriber got every
    change's sequence exactly once, in order."""
    answered = {(job_id, progress): (sent, at) for job_id, progress, sent, at in done}
    expected_count = {
        job_id: sum(1 for j, _ in warm if j == job_id) + sum(1 for j, *_ in done if j == job_id)
        for job_id in snapshots
    }
    from_answer: list[float] = []
    from_request: list[float] = []
    spread: dict[tuple[str, int], list[float]] = {}
    exact = missing = duplicated = unordered = foreign = 0
    problems: list[str] = []
    for record in records:
        job_id, snapshot = record["job"], record["snapshot"]
        sequences = [row[0] for row in record["received"]]
        wanted = list(range(snapshot + 1, snapshot + 1 + expected_count[job_id]))
        if sequences == wanted:
            exact += 1
        else:
            missing += len(set(wanted) - set(sequences))
            duplicated += len(sequences) - len(set(sequences))
            unordered += int(sequences != sorted(sequences))
            foreign += len(set(sequences) - set(wanted))
        problems.extend(record["problems"][:3])
        for sequence, kind, progress, at in record["received"]:
            if kind != "PROGRESS":
                problems.append(f"{job_id}: {kind} at {sequence}")
            stamp = answered.get((job_id, progress))
            if stamp is None:
                continue  # a warm-up change
            from_answer.append(1000 * (at - stamp[1]))
            from_request.append(1000 * (at - stamp[0]))
            spread.setdefault((job_id, progress), []).append(at)
    spreads = [1000 * (max(times) - min(times)) for times in spread.values()]
    return {
        "latency_ms": {
            **percentiles(from_answer),
            "max": max(from_answer),
            "min": min(from_answer),
        },
        "latency_from_request_ms": percentiles(from_request),
        "fanout_spread_ms": {"median": statistics.median(spreads), "max": max(spreads)},
        "samples": len(from_answer),
        "delivery": {
            "subscribers": len(records),
            "every_sequence_once_in_order": exact,
            "missing": missing,
            "duplicated": duplicated,
            "out_of_order": unordered,
            "unexpected": foreign,
            "problems": problems[:10],
        },
    }


# ---------------------------------------------------------------------------------------------
# Replay


async def replay_once(
    server: RenderTrack,
    token: str,
    query: str,
    variables: dict[str, Any],
    field: str,
    first: int,
    count: int,
    compression: bool,
) -> dict[str, Any]:
    """Subscribes, and reads until the `count` changes after sequence `first - 1` are in."""
    async with asyncio.timeout(120):
        async with connect(
            server.ws_url,
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            max_queue=None,
            compression="deflate" if compression else None,
        ) as socket_:
            await socket_.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
                )
            )
            ack = json.loads(await socket_.recv())
            assert ack["type"] == "connection_ack", ack
            cpu_before = server.cpu()
            started = time.perf_counter()
            await socket_.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": query, "variables": variables},
                    }
                )
            )
            sequences: list[int] = []
            first_at = None
            problems = []
            while len(sequences) < count:
                message = json.loads(await socket_.recv())
                if message.get("type") in {"ping", "pong"}:
                    continue
                if message.get("type") != "next" or message["payload"].get("errors"):
                    problems.append(str(message)[:300])
                    break
                event = message["payload"]["data"][field]
                if first_at is None:
                    first_at = time.perf_counter() - started
                if event["kind"] != "LOG":
                    problems.append(f"{event['kind']} at {event['sequence']}")
                sequences.append(int(event["sequence"]))
            elapsed = time.perf_counter() - started
            cpu = server.cpu() - cpu_before
            await socket_.send(json.dumps({"id": "1", "type": "complete"}))
    return {
        "seconds": elapsed,
        "first_event_seconds": first_at,
        "received": len(sequences),
        "exact": sequences == list(range(first, first + count)),
        "server_cpu_us_per_event": 1e6 * cpu / max(1, len(sequences)),
        "problems": problems[:5],
    }


async def run_replays(
    server: RenderTrack, tokens: dict[str, Any], plan: Plan, compression: bool
) -> dict[str, Any]:
    first = tokens["replay_after_sequence"] + 1
    variants = {
        "jobUpdated(afterSequence)": (
            REPLAY_JOB,
            {"id": tokens["replay_job"], "after": tokens["replay_after_sequence"]},
            "jobUpdated",
        ),
        "jobEvents(after)": (REPLAY_EVENTS, {"after": tokens["replay_after_cursor"]}, "jobEvents"),
    }
    results: dict[str, Any] = {}
    for name, (query, variables, field) in variants.items():
        runs = [
            await replay_once(
                server, tokens["reader"], query, variables, field, first, plan.replay, compression
            )
            for _ in range(plan.replays)
        ]
        results[name] = {
            "events": plan.replay,
            "runs": runs,
            "median_seconds": statistics.median(run["seconds"] for run in runs),
            "all_exact": all(run["exact"] for run in runs),
        }
    return results


# ---------------------------------------------------------------------------------------------
# One database


async def measure(database: Database, plan: Plan, options: Options) -> dict[str, Any]:
    started = time.perf_counter()
    tokens = await prepare(database.url, plan)
    print(
        f"  setup: {len(tokens['cases'])} cases, replay history of {plan.replay} changes written"
        f" in {tokens['replay_write_seconds']:.1f} s",
        flush=True,
    )
    server = RenderTrack(
        database, workers=options.workers, profile=options.profile, count_statements=True
    )
    backends = Backends(database.url)
    results: dict[str, Any] = {
        "cases": [],
        "replay_write_seconds": tokens["replay_write_seconds"],
        "workers": options.workers,
    }
    scratch = database.folder
    try:
        await server.start()
        await backends.open()
        for case in tokens["cases"]:
            outcome = await run_case(case, plan, server, backends, tokens, scratch, options)
            results["cases"].append(outcome)
            print("  " + case_line(outcome), flush=True)
        add_fanout_cost(results["cases"])
        if plan.replay:
            results["replay"] = await run_replays(server, tokens, plan, options.compression)
            for name, outcome in results["replay"].items():
                print("  " + replay_line(name, outcome), flush=True)
    finally:
        await backends.close()
        await server.stop()
        log = server.log_text()
        results["server_log"] = {"lines": len(log.splitlines()), "problems": server.log_problems()}
        if options.profile is not None and options.profile.exists():
            print_profile(options.profile)
    results["seconds"] = time.perf_counter() - started
    return results


async def run_database(kind: str, plan: Plan, options: Options) -> dict[str, Any] | None:
    try:
        async with scratch_database(kind) as database:
            return await measure(database, plan, options)
    except Unavailable as missing:
        print(f"{missing}: skipped")
        return None


def print_profile(path: Path, top: int = 30) -> None:
    """The server's functions by their own time (asyncio makes cumulative times misleading)."""
    out = io.StringIO()
    stats_ = pstats.Stats(str(path), stream=out)
    stats_.sort_stats("tottime").print_stats(top)
    print(f"server profile ({path}), top {top} by own time:")
    text = out.getvalue()
    print(text[max(0, text.find("   ncalls")) :], flush=True)


# ---------------------------------------------------------------------------------------------
# Report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def case_line(case: dict[str, Any]) -> str:
    latency = case.get("latency_ms")
    text = f"{case['case']:>16}: "
    if latency:
        text += f"p50 {latency['p50']:.1f} p90 {latency['p90']:.1f} p99 {latency['p99']:.1f} ms; "
    text += f"server CPU {case['server_cpu_ms_per_event']:.2f} ms/change"
    if case.get("statements_per_event") is not None:
        text += f", {case['statements_per_event']:.1f} statements/change"
    delivery = case.get("delivery")
    if delivery:
        text += (
            f"; {delivery['every_sequence_once_in_order']}/{delivery['subscribers']} subscribers"
            " got every sequence once, in order"
        )
    return text


def replay_line(name: str, outcome: dict[str, Any]) -> str:
    runs = ", ".join(f"{run['seconds']:.2f}" for run in outcome["runs"])
    return (
        f"replay {name}: {outcome['events']} changes in {outcome['median_seconds']:.2f} s median"
        f" (runs {runs}); exact: {outcome['all_exact']}"
    )


HEADERS = [
    "database",
    "processes",
    "subscribers",
    "changes",
    "p50",
    "p90",
    "p99",
    "max",
    "p99 from request",
    "server CPU / change",
    "fan-out CPU / message",
    "PG CPU / change",
    "statements / change",
    "delivery",
]


def case_rows(databases: dict[str, Any]) -> list[list[str]]:
    rows = []
    for database, outcome in databases.items():
        if outcome is None:
            continue
        for case in outcome["cases"]:
            latency = case.get("latency_ms") or {}
            delivery = case.get("delivery")
            per_message = case.get("fanout_cpu_us_per_message")
            statements = case["statements_per_event"]
            rows.append(
                [
                    database,
                    str(outcome.get("workers", 1)),
                    case["case"],
                    str(case["events"]),
                    _ms(latency.get("p50")),
                    _ms(latency.get("p90")),
                    _ms(latency.get("p99")),
                    _ms(latency.get("max")),
                    _ms((case.get("latency_from_request_ms") or {}).get("p99")),
                    f"{case['server_cpu_ms_per_event']:.2f} ms",
                    "-" if per_message is None else f"{per_message:.0f} µs",
                    _ms(case["postgres_cpu_ms_per_event"]),
                    "-" if statements is None else f"{statements:.1f}",
                    "-" if not delivery else _delivery(delivery),
                ]
            )
    return rows


def replay_table(databases: dict[str, Any]) -> list[str]:
    lines = [
        "| database | replay | changes | median | runs | first event | server CPU / change"
        " | exact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for database, outcome in databases.items():
        if outcome is None:
            continue
        for name, replay in outcome.get("replay", {}).items():
            runs = ", ".join(f"{run['seconds']:.2f} s" for run in replay["runs"])
            first = statistics.median(run["first_event_seconds"] or 0 for run in replay["runs"])
            cpu = statistics.median(run["server_cpu_us_per_event"] for run in replay["runs"])
            lines.append(
                f"| {database} | {name} | {replay['events']:,} | {replay['median_seconds']:.2f} s"
                f" | {runs} | {1000 * first:.0f} ms | {cpu:.0f} µs | {replay['all_exact']} |"
            )
    return lines if len(lines) > 2 else []


def _delivery(delivery: dict[str, Any]) -> str:
    good, total = delivery["every_sequence_once_in_order"], delivery["subscribers"]
    if good == total and not delivery["problems"]:
        return f"{good}/{total} exact"
    return (
        f"{good}/{total} exact, {delivery['missing']} missing, {delivery['duplicated']} dup,"
        f" {delivery['out_of_order']} unordered"
    )


def goals(databases: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """p99 against the goal at 100 and 1,000 subscribers (one job; and 1,000 spread over 100
    jobs), one process only; the replay of 10,000."""
    quick = plan is QUICK
    found = []
    for database, outcome in databases.items():
        if outcome is None:
            continue
        workers = outcome.get("workers", 1)
        for subscribers, target in GOALS_P99_MS.items():
            cases = [case for case in outcome["cases"] if case["subscribers"] == subscribers]
            cases = [case for case in cases if case.get("latency_ms") and "/s" not in case["case"]]
            if not cases:
                found.append(
                    stats.goal(
                        f"screen, {database}: p99 at {subscribers:,} subscribers",
                        None,
                        "ms",
                        "<=",
                        target,
                        note=f"no case with {subscribers:,} subscribers in this run",
                    )
                )
            for case in cases:
                found.append(
                    stats.goal(
                        f"screen, {database}, {workers} process(es): p99 at {case['case']}",
                        case["latency_ms"]["p99"],
                        "ms",
                        "<=",
                        target,
                        judged=workers == 1,
                        note="the goal is for one process" if workers != 1 else "",
                    )
                )
        for name, replay in outcome.get("replay", {}).items():
            found.append(
                stats.goal(
                    f"screen, {database}: replay of {replay['events']:,} changes via {name}",
                    replay["median_seconds"],
                    "s",
                    "<=",
                    GOAL_REPLAY_SECONDS,
                    judged=replay["events"] >= GOAL_REPLAY_EVENTS,
                    note="" if replay["events"] >= GOAL_REPLAY_EVENTS else "goal is for 10,000",
                )
            )
    if quick:
        for entry in found:
            if entry["met"] is not None:
                entry["note"] = "quick sizes"
    return found


# ---------------------------------------------------------------------------------------------
# Entry


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench screen")
    parser.add_argument("database", nargs="?", choices=DATABASES)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, PostgreSQL only, under a minute"
    )
    parser.add_argument("--clients", type=int, default=1, help="subscriber processes (default 1)")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (default 1; above 1 PostgreSQL)"
    )
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="subscribers do not offer permessage-deflate (default: they do, as browsers do)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="a short run (0 and 100 subscribers, a replay of 2,000) with the server under "
        "cProfile; prints its top functions, stats kept in bench/results/",
    )
    parser.add_argument("--plan", choices=PLANS, help=argparse.SUPPRESS)  # bench/processes.py
    parser.add_argument("--into", help=argparse.SUPPRESS)  # a child's results, for its parent
    return parser.parse_args(argv)


def plan_of(args: argparse.Namespace) -> Plan:
    if args.plan:
        return PLANS[args.plan]
    return PROFILE if args.profile else QUICK if args.quick else FULL


async def run_children(argv: list[str], plan: Plan, workers: int) -> dict[str, Any] | None:
    """Each database in a process of its own (Tortoise keeps one dialect per process)."""
    databases: dict[str, Any] = {}
    kinds = ("postgres",) if workers > 1 else plan.databases
    with tempfile.TemporaryDirectory(prefix="rendertrack_fanout_") as directory:
        for database in kinds:
            into = Path(directory) / f"{database}.json"
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench", "screen", database, *argv, "--into", str(into)
            )
            if await child.wait():
                return None
            databases[database] = json.loads(into.read_text())
    return databases


def main(argv: list[str]) -> int:
    """No database named: each in a process of its own, results merged here."""
    args = _arguments(argv)
    plan = plan_of(args)
    started = time.perf_counter()
    if args.database:
        print(f"== screen {args.database}, {args.workers} server process(es)", flush=True)
        options = Options(
            clients=max(1, args.clients),
            compression=not args.no_compression,
            profile=RESULTS_FILE.parent / f"fanout-{args.database}.prof" if args.profile else None,
            workers=args.workers,
        )
        if options.profile is not None:
            options.profile.parent.mkdir(parents=True, exist_ok=True)
        outcome = asyncio.run(run_database(args.database, plan, options))
        if args.into:
            Path(args.into).write_text(json.dumps(outcome, default=str))
            return 0
        databases = {args.database: outcome}
    else:
        print(machine(), flush=True)
        found = asyncio.run(run_children(argv, plan, args.workers))
        if found is None:
            return 1
        databases = found
    replay = replay_table(databases)
    finish(
        "screen",
        quick=plan is QUICK,
        headers=HEADERS,
        rows=case_rows(databases),
        goals=goals(databases, plan),
        data={
            "plan": plan.__dict__,
            "subscriber_processes": args.clients,
            "compression": not args.no_compression,
            "profiled": args.profile,
            "workers": args.workers,
            "databases": databases,
        },
        started=started,
        notes=[*replay, ""] if replay else [],
    )
    exact = all(
        (case.get("delivery") or {}).get("every_sequence_once_in_order")
        == (case.get("delivery") or {}).get("subscribers")
        for outcome in databases.values()
        if outcome
        for case in outcome["cases"]
    )
    return 0 if exact and any(databases.values()) else 1
