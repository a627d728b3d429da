"""The queue's duties, run by one sweeper task in every server process: jobs whose worker went
silent go back to the queue (or fail after their last attempt), jobs past their deadline are
cancelled, and the history of finished jobs older than the retention is pruned. Each action is
an ordinary compare-and-set transition with its event, so when several processes sweep one
database each job is acted on exactly once: the losers of a race re-read the job, find it no
longer stalled or overdue, and leave it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise import connections

from domain.errors import DomainError
from domain.status import JobStatus
from models import Job
from models.reachability import log_retry
from service import clock, event_store, job_store, jobs, metrics, settings

logger = logging.getLogger(__name__)

DEFAULT_SWEEP_INTERVAL_SECONDS = 5.0
# Jobs one look-up hands the sweeper; it looks again until a look-up comes back short.
SWEEP_BATCH = 200
# Events one round prunes at most: a large backlog goes over several rounds.
PRUNE_BATCH = 1000


@dataclass
class SweepReport:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0
    pruned: int = 0  # events of finished jobs past the retention

    @property
    def acted(self) -> int:
        return self.requeued + self.failed + self.cancelled


async def sweep_once(now: datetime | None = None, *, recover_stalled: bool = True) -> SweepReport:
    """One round: every overdue job cancelled, every stalled job requeued or failed (unless
    `recover_stalled` is False)."""
    now = now or clock.now()
    report = SweepReport()
    connection = connections.get("default")

    async def overdue() -> list[str]:
        return await job_store.overdue_job_ids(connection, now, SWEEP_BATCH)

    async for _ in _acted_on(overdue, jobs.cancel_if_overdue, now):
        report.cancelled += 1
        metrics.SWEEPER_ACTIONS.labels("cancelled").inc()
    days = settings.current().event_retention_days
    if days:
        report.pruned = await event_store.prune(now - timedelta(days=days), PRUNE_BATCH)
        metrics.SWEEPER_ACTIONS.labels("pruned").inc(report.pruned)
    if not recover_stalled:
        return report
    silent_since = now - timedelta(seconds=settings.current().stall_timeout_seconds)

    async def stalled() -> list[str]:
        return await job_store.stalled_job_ids(connection, silent_since, SWEEP_BATCH)

    async for job in _acted_on(stalled, jobs.recover_if_stalled, now):
        if JobStatus(job.status) is JobStatus.FAILED:
            report.failed += 1
            metrics.SWEEPER_ACTIONS.labels("failed").inc()
        else:
            report.requeued += 1
            metrics.SWEEPER_ACTIONS.labels("requeued").inc()
    return report


Duty = Callable[[str, datetime], Awaitable[Job | None]]


async def _acted_on(
    find: Callable[[], Awaitable[list[str]]], action: Duty, now: datetime
) -> AsyncIterator[Job]:
    """Runs `action` on every job `find` hands out, batch after batch, until a batch comes
    back short; yields the jobs it changed. A job is tried once a round."""
    seen: set[str] = set()
    while True:
        found = [job_id for job_id in await find() if job_id not in seen]
        for job_id in found:
            seen.add(job_id)
            if (job := await _duty(action, job_id, now)) is not None:
                yield job
        if len(found) < SWEEP_BATCH:
            return


async def _duty(action: Duty, job_id: str, now: datetime) -> Job | None:
    """One duty on one job. A refusal (the job was removed, or changes too fast) leaves it for
    the next round."""
    try:
        return await action(job_id, now)
    except DomainError as refusal:
        logger.info("Sweeper left job %s this round: %s", job_id, refusal)
        return None


async def run_sweeper(interval_seconds: float, stop: asyncio.Event) -> None:
    """Sweeps every `interval_seconds` until `stop` is set. A failed round (the database is
    down) is logged and the next round tries again.

    Silence is judged only once this process has reached the database for a whole stall
    timeout: while the server or its database was down, workers could not report, and their
    jobs must not be taken from them for it."""
    reachable_since: datetime | None = None
    while not stop.is_set():
        try:
            now = clock.now()
            timeout = settings.current().stall_timeout_seconds
            if reachable_since is None:
                reachable_since = now
            judged = now - reachable_since >= timedelta(seconds=timeout)
            report = await sweep_once(now, recover_stalled=judged)
            if report.pruned:
                logger.info("Sweep: %d events of finished jobs pruned", report.pruned)
            if report.acted:
                logger.warning(
                    "Sweep: %d stalled jobs requeued, %d failed, %d cancelled past their deadline",
                    report.requeued,
                    report.failed,
                    report.cancelled,
                )
        except Exception as error:
            reachable_since = None
            log_retry(logger, "Sweep failed", error, interval_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
