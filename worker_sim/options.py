"""The command line of `rendertrack simulate-worker` (also `python -m worker_sim`).

Kept free of httpx and of the worker itself, so that building `rendertrack`'s parser stays cheap.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_VARIABLE = "RENDERTRACK_WORKER_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"
PROTOCOLS = ("graphql", "nexrender")


@dataclass(frozen=True)
class Options:
    url: str
    token: str
    protocol: str = "graphql"
    concurrency: int = 1
    duration: float = 20.0
    fail_rate: float = 0.0
    jobs: int | None = None
    name: str = "sim"
    poll: float = 1.0
    heartbeat: float = 5.0
    seed: int | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"the rendertrack server (default: {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        help=f"a WORKER's API token (default: ${TOKEN_VARIABLE}); for --protocol nexrender it "
        "is sent as the nexrender-secret",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="graphql",
        help="GraphQL (claimJob, reportProgress, ...) or Nexrender's REST API under /api/v1 "
        "(default: graphql)",
    )
    parser.add_argument(
        "--concurrency",
        type=_at_least(1, int),
        default=1,
        metavar="N",
        help="jobs rendered at once (default: 1)",
    )
    parser.add_argument(
        "--duration",
        type=_at_least(0.01, float),
        default=20.0,
        metavar="S",
        help="seconds a render takes, give or take 20%% (default: 20)",
    )
    parser.add_argument(
        "--fail-rate",
        type=_fraction,
        default=0.0,
        metavar="R",
        help="probability (0..1) that a render fails part-way (default: 0)",
    )
    parser.add_argument(
        "--jobs",
        type=_at_least(1, int),
        metavar="N",
        help="stop after N jobs (default: run until interrupted)",
    )
    parser.add_argument(
        "--name",
        help="this worker's name in its log lines and the nexrender-name header "
        "(default: sim-<pid>)",
    )
    parser.add_argument(
        "--poll",
        type=_at_least(0.05, float),
        default=1.0,
        metavar="S",
        help="seconds between two claims while the queue is empty (default: 1)",
    )
    parser.add_argument(
        "--heartbeat",
        type=_at_least(0.05, float),
        default=5.0,
        metavar="S",
        help="a frame that takes longer than this sends a heartbeat every S seconds (default: 5)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="makes frames, step times and failures the same from run to run",
    )


def options_of(args: argparse.Namespace) -> Options:
    """The checked options; raises ValueError with a message for a person."""
    token = args.token or os.environ.get(TOKEN_VARIABLE, "")
    if not token.strip():
        raise ValueError(f"a worker token is needed: --token or ${TOKEN_VARIABLE}")
    url = args.url.strip().rstrip("/")
    url = url.removesuffix("/graphql").removesuffix("/api/v1")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url must start with http:// or https://, not {args.url!r}")
    return Options(
        url=url,
        token=token.strip(),
        protocol=args.protocol,
        concurrency=args.concurrency,
        duration=args.duration,
        fail_rate=args.fail_rate,
        jobs=args.jobs,
        name=args.name or f"sim-{os.getpid()}",
        poll=args.poll,
        heartbeat=args.heartbeat,
        seed=args.seed,
    )


def _at_least(low: float, kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {raw}")
        return value

    return parse


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, not {raw}")
    return value
