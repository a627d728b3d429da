"""GET /metrics in Prometheus' text format: the metrics of service/metrics.py, added up over
every server process, and the jobs by status read from the database at scrape time.

It shows counts only, never a job's data, so it needs no token by default; with
RENDERTRACK_METRICS_TOKEN set it needs `Authorization: Bearer <that token>`.

With several processes (`rendertrack serve --workers N`) each writes its values to files in
PROMETHEUS_MULTIPROC_DIR, a fresh folder `rendertrack serve` makes for the run and removes at
exit; a scrape of any process reads them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.metrics import JobCounts, job_counts

logger = logging.getLogger(__name__)

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# A scrape waits this long for the jobs table, then answers without the jobs' gauges.
DATABASE_TIMEOUT_SECONDS = 2.0
BEARER = "bearer "
# The files of a live gauge (websockets, subscriptions) name the process that wrote them.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def metrics_endpoint(token: str | None) -> Callable[[Request], Awaitable[Response]]:
    """The /metrics handler; with `token`, a scrape must send it as a bearer token."""

    async def metrics(request: Request) -> Response:
        if token is not None and not _carries(request, token):
            return JSONResponse(
                {
                    "error": "GET /metrics needs 'Authorization: Bearer <token>' with the "
                    "token of RENDERTRACK_METRICS_TOKEN.",
                    "code": "UNAUTHENTICATED",
                },
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        try:
            counts: JobCounts | None = await asyncio.wait_for(
                job_counts(), DATABASE_TIMEOUT_SECONDS
            )
        except Exception as error:  # the process's own metrics are still worth a scrape
            logger.warning("/metrics: cannot count the jobs: %r", error)
            counts = None
        return Response(scrape(counts), media_type=CONTENT_TYPE_LATEST)

    return metrics


def scrape(counts: JobCounts | None) -> bytes:
    """The text of one scrape: every process's metrics, then the jobs table's."""
    directory = os.environ.get(MULTIPROCESS_VARIABLE)
    if directory:
        _forget_dead_processes(Path(directory))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        processes = generate_latest(registry)
    else:
        processes = generate_latest(REGISTRY)
    tables = CollectorRegistry()
    tables.register(_JobsTable(counts))
    return processes + generate_latest(tables)


class _JobsTable(Collector):
    def __init__(self, counts: JobCounts | None) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "rendertrack_database_up",
            "1 when this scrape could count the jobs in the database, else 0.",
            value=0 if self._counts is None else 1,
        )
        yield up
        if self._counts is None:
            return
        jobs = GaugeMetricFamily(
            "rendertrack_jobs", "Jobs by status, counted at scrape time.", labels=["status"]
        )
        for status, count in self._counts.by_status.items():
            jobs.add_metric([status.value], count)
        yield jobs
        yield GaugeMetricFamily(
            "rendertrack_queue_depth",
            "QUEUED jobs a claim could hand out now (out of their retry backoff, before their "
            "deadline), counted at scrape time.",
            value=self._counts.claimable,
        )


def _carries(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(BEARER):
        return False
    given = header[len(BEARER) :].strip()
    return hmac.compare_digest(given.encode(), token.encode())


def _forget_dead_processes(directory: Path) -> None:
    """Drops the live gauges of processes that are gone (a worker that crashed or was
    replaced), which would otherwise be summed for ever. Their counters stay: what they counted
    happened."""
    dead: set[int] = set()
    for path in directory.glob("gauge_live*.db"):
        found = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if found is not None and not _alive(int(found.group(1))):
            dead.add(int(found.group(1)))
    for pid in dead:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_this_process() -> None:
    """At a worker's shutdown: its websockets and subscriptions are gone."""
    directory = os.environ.get(MULTIPROCESS_VARIABLE)
    if directory:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), directory)


@contextlib.contextmanager
def multiprocess_directory(workers: int) -> Iterator[None]:
    """For `rendertrack serve --workers N` (N > 1): a fresh PROMETHEUS_MULTIPROC_DIR for the
    worker processes (they inherit the environment and import prometheus-client after it is
    set), removed when the server stops. Values left by an earlier run would be added in, so any
    inherited folder is replaced by a new one."""
    if workers <= 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="rendertrack-metrics-")
    previous = os.environ.get(MULTIPROCESS_VARIABLE)
    os.environ[MULTIPROCESS_VARIABLE] = directory
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_VARIABLE, None)
        else:
            os.environ[MULTIPROCESS_VARIABLE] = previous
        shutil.rmtree(directory, ignore_errors=True)
