"""A job's log in the database: lines added in one multi-row INSERT, the oldest deleted past
the cap, read whole or by its tail. An append writes its own lines and never reads or rewrites
the rest of the log (the trim reads only the lines it drops)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tortoise import BaseDBAsyncClient, connections

from domain import joblog
from domain.errors import BadUserInput
from models import Job, JobLogLine
from service.job_store import placeholder

# How many of the oldest lines a trim reads at a time while it looks for where to cut.
_TRIM_BATCH = 500


async def append(
    connection: BaseDBAsyncClient,
    job: Job,
    lines: Sequence[str],
    now: datetime,
    *,
    limit_bytes: int,
) -> dict[str, Any]:
    """Adds `lines` stamped with `now`; returns the job's log bookkeeping to write in the same
    compare-and-set UPDATE (which also guards it: a concurrent append makes this one retry)."""
    stamped = [joblog.stamp(line, now) for line in lines]
    rows = [JobLogLine(job_id=job.id, line=line, size=joblog.size_of(line)) for line in stamped]
    await JobLogLine.bulk_create(rows, using_db=connection)
    kept = job.log_bytes + sum(row.size for row in rows)
    changes: dict[str, Any] = {"log_bytes": kept}
    excess = joblog.bytes_to_drop(kept, limit_bytes)
    if excess:
        lines_dropped, bytes_dropped = await _drop_oldest(connection, job.id, excess)
        changes.update(
            log_bytes=kept - bytes_dropped,
            log_dropped_lines=job.log_dropped_lines + lines_dropped,
            log_dropped_bytes=job.log_dropped_bytes + bytes_dropped,
        )
    return changes


async def _drop_oldest(connection: BaseDBAsyncClient, job_id: str, wanted: int) -> tuple[int, int]:
    """Deletes the oldest lines that free at least `wanted` bytes; returns (lines, bytes)."""
    lines = freed = 0
    last_id = None
    while freed < wanted:
        query = JobLogLine.filter(job_id=job_id).using_db(connection)
        if last_id is not None:
            query = query.filter(id__gt=last_id)
        batch = await query.order_by("id").limit(_TRIM_BATCH).values_list("id", "size")
        if not batch:
            break
        sizes = [size for _, size in batch]
        count = joblog.lines_covering(sizes, wanted - freed)
        lines += count
        freed += sum(sizes[:count])
        last_id = batch[count - 1][0]
    if last_id is not None:
        await JobLogLine.filter(job_id=job_id, id__lte=last_id).using_db(connection).delete()
    return lines, freed


def check_tail(tail: int | None) -> int | None:
    if tail is not None and tail < 0:
        raise BadUserInput.single("tail", "must not be negative")
    return tail


async def read_logs(jobs: Sequence[Job], tail: int | None = None) -> list[str | None]:
    """Each job's log (its last `tail` lines when given), in one statement for all of them."""
    check_tail(tail)
    by_job: dict[str, list[str]] = {job.id: [] for job in jobs}
    if jobs and tail != 0:
        for job_id, line in await _lines(list(by_job), tail):
            by_job[job_id].append(line)
    return [
        joblog.render(
            by_job[job.id],
            joblog.Dropped(job.log_dropped_lines, job.log_dropped_bytes),
            tail=tail,
            has_lines=job.log_bytes > 0,
        )
        for job in jobs
    ]


async def _lines(job_ids: list[str], tail: int | None) -> list[tuple[str, str]]:
    connection = connections.get("default")
    marks = ", ".join(placeholder(connection, n) for n in range(1, len(job_ids) + 1))
    if tail is None:
        sql = f"""SELECT "job_id", "line" FROM "job_log_lines"
            WHERE "job_id" IN ({marks}) ORDER BY "job_id", "id" """
    else:
        sql = f"""SELECT "job_id", "line" FROM (
                SELECT "job_id", "line", "id", ROW_NUMBER() OVER (
                    PARTITION BY "job_id" ORDER BY "id" DESC) AS "from_end"
                FROM "job_log_lines" WHERE "job_id" IN ({marks})
            ) AS "numbered" WHERE "from_end" <= {int(tail)} ORDER BY "job_id", "id" """
    rows = await connection.execute_query_dict(sql, job_ids)
    return [(row["job_id"], row["line"]) for row in rows]
