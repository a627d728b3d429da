"""What every scenario needs: the machine's description, the PostgreSQL server to use, and the
results file (bench/results/latest.json, not committed; bench/RESULTS.md is the committed
record)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import asyncpg

from testkit.postgres import asyncpg_url

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
POSTGRES_VARIABLE = "RENDERTRACK_BENCH_POSTGRES_URL"
ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = ROOT / "bench" / "results" / "latest.json"


def postgres_server() -> str:
    return os.environ.get(POSTGRES_VARIABLE, "").strip() or DEFAULT_POSTGRES


async def postgres_reachable(url: str) -> bool:
    try:
        connection = await asyncpg.connect(asyncpg_url(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") if Path("/proc/cpuinfo").exists() else open(os.devnull) as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90 and p99 (inclusive method: no extrapolation past the largest value)."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


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


def write_results(scenario: str, results: dict[str, Any]) -> Path:
    """Stores `results` under `scenario` in bench/results/latest.json, keeping the other
    scenarios' latest results."""
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    try:
        everything = json.loads(RESULTS_FILE.read_text())
    except (OSError, ValueError):
        everything = {}
    everything[scenario] = results
    RESULTS_FILE.write_text(json.dumps(everything, indent=2, default=str) + "\n")
    return RESULTS_FILE
