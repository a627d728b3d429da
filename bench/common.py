"""What every scenario needs: the machine's description, the PostgreSQL server to use, and the
results file (bench/results/latest.json, not committed; bench/RESULTS.md is the committed
record), and how a scenario ends: its table, its goals, its entry in the results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import stats, table
from testkit.postgres import asyncpg_url

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
POSTGRES_VARIABLE = "RENDERTRACK_BENCH_POSTGRES_URL"
RESULTS_VARIABLE = "RENDERTRACK_BENCH_RESULTS"  # another results file (the quick test's)
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS_FILE = ROOT / "bench" / "results" / "latest.json"
RESULTS_FILE = DEFAULT_RESULTS_FILE  # where the optional extras go (profiles)


def results_file() -> Path:
    named = os.environ.get(RESULTS_VARIABLE, "").strip()
    return Path(named) if named else DEFAULT_RESULTS_FILE


def postgres_server() -> str:
    return os.environ.get(POSTGRES_VARIABLE, "").strip() or DEFAULT_POSTGRES


async def postgres_reachable(url: str) -> bool:
    try:
        connection = await asyncpg.connect(asyncpg_url(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def postgres_version(url: str) -> str:
    connection = await asyncpg.connect(asyncpg_url(url), timeout=5)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") if Path("/proc/cpuinfo").exists() else open(os.devnull) as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    if Path("/proc/meminfo").exists():
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kib / 1024 / 1024:.0f} GiB"
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {cpu}{memory},"
        f" Python {platform.python_version()}"
    )


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def source_state() -> dict[str, Any]:
    """The commit measured and whether the working tree differed from it (and where)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.rstrip()  # porcelain lines start with a space: keep it

    changed = sorted(line[3:] for line in git("status", "--porcelain").splitlines() if line)
    return {"commit": git("log", "-1", "--format=%h %s"), "uncommitted": changed}


def write_results(scenario: str, results: dict[str, Any], *, quick: bool | None = None) -> Path:
    """Stores `results` under `scenario` in the results file (bench/results/latest.json, or
    $RENDERTRACK_BENCH_RESULTS), keeping the other scenarios' latest results. Each entry
    carries the machine, the commit, the time and whether the run was quick."""
    path = results_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        everything = json.loads(path.read_text())
    except (OSError, ValueError):
        everything = {}
    entry = {
        "scenario": scenario,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_end": load_average(),
        "source": source_state(),
        **({} if quick is None else {"quick": quick}),
        **results,
    }
    everything[scenario] = entry
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(everything, indent=2, default=str) + "\n")
    scratch.replace(path)
    return path


def finish(
    scenario: str,
    *,
    quick: bool,
    headers: list[str],
    rows: list[list[str]],
    goals: list[dict[str, Any]],
    data: dict[str, Any],
    started: float,
    notes: Sequence[str] = (),
) -> Path:
    """Prints the scenario's table and its goals, and records them with `data`."""
    print()
    print(table.markdown(headers, rows))
    print()
    for line in notes:
        print(line)
    for entry in goals:
        print(stats.goal_line(entry))
    elapsed = time.perf_counter() - started
    path = write_results(
        scenario,
        {
            "seconds": round(elapsed, 1),
            "table": table.record(headers, rows),
            "goals": goals,
            **data,
        },
        quick=quick,
    )
    label = " (quick sizes)" if quick else ""
    print(f"{scenario}{label}: {elapsed:.0f} s; results in {path}", flush=True)
    return path
