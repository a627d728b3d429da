"""How long a job will take and when it will start or finish, from the farm's own history."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta

from domain.status import JobStatus

# How many recent completions of the same template (or project) the estimate is the median of.
ESTIMATE_SAMPLE_SIZE = 20
# The window over which the farm's recent throughput is measured for start estimates.
THROUGHPUT_WINDOW = timedelta(hours=1)


def estimated_seconds(samples: Sequence[int]) -> int | None:
    """The median of past render times in seconds, or None without history."""
    if not samples:
        return None
    return round(statistics.median(samples))


def estimated_completion_at(
    *,
    started_at: datetime | None,
    progress: int,
    estimated_time: int | None,
    now: datetime,
    status: JobStatus = JobStatus.RENDERING,
) -> datetime | None:
    """For a RENDERING job: from the rate of progress so far; before the first report, from
    the start plus the estimate. None when neither is known, and for any other status."""
    if status is not JobStatus.RENDERING or started_at is None:
        return None
    if progress > 0:
        elapsed = max(now - started_at, timedelta(0))
        return now + elapsed * (100 - progress) / progress
    if estimated_time is None:
        return None
    return max(started_at + timedelta(seconds=estimated_time), now)


def estimated_start_at(
    *,
    queue_position: int | None,
    finished_recently: int,
    now: datetime,
    status: JobStatus = JobStatus.QUEUED,
    not_before: datetime | None = None,
) -> datetime | None:
    """For a QUEUED job: the jobs ahead of it and itself, at the rate the farm finished jobs
    over the last THROUGHPUT_WINDOW; in a retry backoff, `not_before`, the earliest it may
    start. None without recent history or a place in the queue, and for any other status."""
    if status is not JobStatus.QUEUED:
        return None
    if not_before is not None and not_before > now:
        return not_before
    if queue_position is None or finished_recently <= 0:
        return None
    seconds_per_job = THROUGHPUT_WINDOW / finished_recently
    return now + seconds_per_job * queue_position
