"""`python -m bench [--quick]` runs every scenario, `python -m bench <scenario> [arguments]` one.

Each scenario is a module of bench/ with `main(argv) -> int`, runs a real server
(`rendertrack serve` in a process of its own, bench/server.py) with its load from another process
(bench/load.py, bench/fanout_client.py), prints a table with each goal met or missed, and merges
its results into bench/results/latest.json. Run all, each gets a process of its own (Tortoise
keeps one set of connections, and one dialect, per process).

    make bench                        # every scenario, full size (see bench/RESULTS.md for times)
    python -m bench --quick           # every scenario, small (1.5 to 2 minutes)
    python -m bench screen [--quick]  # 1. update to screen: change to subscriber latency
    python -m bench progress          # 2. progress reports/s through GraphQL vs asyncpg's UPDATE
    python -m bench claims            # 3. claims/s, claimJob and REST pickup vs @nexrender/server
    python -m bench page              # 4. jobs(first: 50) vs a plain Starlette endpoint
    python -m bench memory            # 5. RSS per idle subscriber, and after they drop
    python -m bench scale             # 6. claim latency with 1k vs 200k queued beside 800k done
    python -m bench processes         # 7. claims and screen with --workers 2 vs one process
    RENDERTRACK_BENCH_POSTGRES_URL=postgres://user@host:5432/db python -m bench claims
    RENDERTRACK_BENCH_RESULTS=/tmp/r.json python -m bench --quick   # results elsewhere
    RENDERTRACK_BENCH_SCENARIOS=claims,page python -m bench --quick  # some scenarios only
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

SCENARIOS = {
    "screen": "bench.fanout",
    "progress": "bench.progress",
    "claims": "bench.claims",
    "page": "bench.page",
    "memory": "bench.memory",
    "scale": "bench.scale",
    "processes": "bench.processes",
}
ALIASES = {"fanout": "screen"}  # its name before issue 13
SCENARIOS_VARIABLE = "RENDERTRACK_BENCH_SCENARIOS"  # a subset for `python -m bench [--quick]`


def usage() -> str:
    return f"usage: python -m bench [--quick] | python -m bench [{'|'.join(SCENARIOS)}] [arguments]"


def chosen() -> list[str]:
    """Every scenario, or those $RENDERTRACK_BENCH_SCENARIOS names (comma-separated)."""
    named = [n.strip() for n in os.environ.get(SCENARIOS_VARIABLE, "").split(",") if n.strip()]
    unknown = [name for name in named if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"{SCENARIOS_VARIABLE}: no scenario {', '.join(unknown)}; {usage()}")
    return named or list(SCENARIOS)


def run_all(arguments: list[str]) -> int:
    failed = []
    started = time.perf_counter()
    for name in chosen():
        print(f"\n== {name}", flush=True)
        begun = time.perf_counter()
        finished = subprocess.run([sys.executable, "-m", "bench", name, *arguments], check=False)
        print(f"== {name}: exit {finished.returncode}, {time.perf_counter() - begun:.0f} s")
        if finished.returncode:
            failed.append(name)
    print(
        f"\nall scenarios: {time.perf_counter() - started:.0f} s;"
        f" failed: {', '.join(failed) or 'none'}"
    )
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv or argv == ["--quick"]:
        return run_all(argv)
    if argv[0] in {"-h", "--help"}:
        print(__doc__)
        print(usage())
        return 0
    name = ALIASES.get(argv[0], argv[0])
    if name not in SCENARIOS:
        print(usage(), file=sys.stderr)
        return 2
    return importlib.import_module(SCENARIOS[name]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
