"""`python -m bench` runs every scenario, `python -m bench <scenario> [arguments]` one of them.

Each scenario is a module of bench/ with `main(argv) -> int`; run all, each gets a process of its
own (Tortoise keeps one set of connections, and one dialect, per process).

    make bench                           # every scenario
    python -m bench progress             # progress-report throughput, SQLite and PostgreSQL
    python -m bench claims               # claim latency with a large table (PostgreSQL only)
    python -m bench fanout [--quick]     # change-to-subscriber latency, cost, replay (~10 min)
    RENDERTRACK_BENCH_POSTGRES_URL=postgres://user@host:5432/db python -m bench claims
"""

from __future__ import annotations

import importlib
import subprocess
import sys

SCENARIOS = {
    "progress": "bench.progress",
    "claims": "bench.claims_at_scale",
    "fanout": "bench.fanout",
}


def usage() -> str:
    return f"usage: python -m bench [{'|'.join(SCENARIOS)} [arguments]]"


def main(argv: list[str]) -> int:
    if not argv:
        failed = 0
        for name in SCENARIOS:
            print(f"== {name}", flush=True)
            finished = subprocess.run([sys.executable, "-m", "bench", name], check=False)
            failed = failed or finished.returncode
        return failed
    if argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    if argv[0] not in SCENARIOS:
        print(usage(), file=sys.stderr)
        return 2
    return importlib.import_module(SCENARIOS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
