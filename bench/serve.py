"""`rendertrack serve` for the benchmarks, exactly as the command line runs it, plus a count of
the SQL statements the server sends through Tortoise (one `tortoise.db_client` debug record each;
BEGIN/COMMIT and the bus's own LISTEN connection are not counted) and a file-descriptor limit
high enough for thousands of websockets.

The count is kept in this process only: with `--workers 2` uvicorn serves from processes it
spawns, which count nothing (bench/server.py then reports no count).

A thread writes the count to the file named by $BENCH_STATEMENTS_FILE whenever it changed
(every 50 ms at most), so the harness reads it from outside without touching the server.

    python -m bench.serve --host 127.0.0.1 --port 8123 [--workers 2]
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import threading
import time
from pathlib import Path

from app import cli

STATEMENTS_VARIABLE = "BENCH_STATEMENTS_FILE"


class StatementCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        # Tortoise's other debug records announce pools opened and closed.
        if not str(record.msg).startswith(("Created connection pool", "Closed connection pool")):
            self.count += 1


def _write_forever(counter: StatementCounter, target: Path) -> None:
    written = -1
    while True:
        count = counter.count
        if count != written:
            scratch = target.with_suffix(".tmp")
            scratch.write_text(f"{count}\n")
            scratch.replace(target)
            written = count
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    target = os.environ.get(STATEMENTS_VARIABLE)
    if target:
        counter = StatementCounter()
        db_client = logging.getLogger("tortoise.db_client")
        db_client.setLevel(logging.DEBUG)
        db_client.addHandler(counter)
        db_client.propagate = False
        threading.Thread(target=_write_forever, args=(counter, Path(target)), daemon=True).start()
    return cli.main(["serve", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
