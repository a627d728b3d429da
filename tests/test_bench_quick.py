"""`python -m bench --quick` (bench/, issue 13) runs every scenario small and ends well, so that the
benchmarks cannot rot: a real server, a load process, a table, and the scenario's entry in the
results file with numbers in it. The claims scenarios must find no double claim.

The bench is built on PostgreSQL (LISTEN/NOTIFY, the asyncpg floor, the plans), so the test runs
in the PostgreSQL pass only (RENDERTRACK_TEST_DATABASE=postgres), against the suite's server
(RENDERTRACK_TEST_POSTGRES_URL); it writes its results to a temporary file, never over
bench/results/latest.json.

The whole quick run takes about two minutes on the project's 2-core VM, so by default the test
runs five of the seven scenarios (about a minute): `scale` and `processes` reuse their code
(bench/rows.py, bench/load.py, bench/claims.py, bench/fanout.py) with other sizes and server
options. RENDERTRACK_BENCH_QUICK_SCENARIOS=all runs all seven; a comma-separated list runs
those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.databases import only_in_pass, postgres_server_url

pytestmark = [
    pytest.mark.slow,
    only_in_pass("postgres", "the bench runs on PostgreSQL"),
]

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("screen", "progress", "claims", "page", "memory", "scale", "processes")
DEFAULT = ("screen", "progress", "claims", "page", "memory")
SUBSET_VARIABLE = "RENDERTRACK_BENCH_QUICK_SCENARIOS"
TIMEOUT = 900


def scenarios() -> list[str]:
    named = [n.strip() for n in os.environ.get(SUBSET_VARIABLE, "").split(",") if n.strip()]
    if named == ["all"]:
        return list(SCENARIOS)
    return named or list(DEFAULT)


def numbers_in(entry: dict[str, Any]) -> list[float]:
    return [goal["value"] for goal in entry["goals"] if isinstance(goal.get("value"), int | float)]


def test_the_quick_bench_runs_every_scenario(tmp_path: Path) -> None:
    wanted = scenarios()
    results = tmp_path / "latest.json"
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_BENCH")
    }
    env["RENDERTRACK_BENCH_RESULTS"] = str(results)
    env["RENDERTRACK_BENCH_SCENARIOS"] = ",".join(wanted)
    server = postgres_server_url()
    if server:
        env["RENDERTRACK_BENCH_POSTGRES_URL"] = server
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    said = done.stdout[-6000:] + "\n" + done.stderr[-4000:]
    assert done.returncode == 0, said

    recorded = json.loads(results.read_text())
    assert sorted(recorded) == sorted(wanted), said
    for name in wanted:
        entry = recorded[name]
        assert entry["quick"] is True, name
        assert entry["machine"] and entry["timestamp"] and entry["source"]["commit"], name
        assert entry["table"]["rows"], f"{name}: an empty table"
        assert entry["goals"], f"{name}: no goal judged"
        assert numbers_in(entry), f"{name}: no figure measured: {entry['goals']}"
        assert f"| {entry['table']['headers'][0]} |" in done.stdout, f"{name}: no table printed"
    for name in {"claims", "processes"} & set(wanted):
        assert recorded[name]["double_claims"] == 0, recorded[name]
