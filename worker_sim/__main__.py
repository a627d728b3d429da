"""`python -m worker_sim [options]`: the same as `rendertrack simulate-worker`, without loading the
server's packages (for a machine that has only this folder and httpx)."""

from __future__ import annotations

import argparse
import sys

from worker_sim.options import add_arguments, options_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker_sim", description="A simulated render worker for rendertrack."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = options_of(args)
    except ValueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    from worker_sim.worker import run

    return run(options)


if __name__ == "__main__":
    sys.exit(main())
