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
    # The lines belong to the change the caller is making: the job's next sequence.
    sequence = job.sequence + 1
    rows = [
        JobLogLine(job_id=job.id, line=line, size=joblog.size_of(line), sequence=sequence)
        for line in stamped
    ]
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
    """Each job's log as the job's last change left it (its last `tail` lines when given), in
    one statement for all of them. A job as an earlier change left it (an event's job) reads
    only the lines written up to that change."""
    check_tail(tail)
    found: dict[tuple[str, int], list[str]] = {(job.id, job.sequence): [] for job in jobs}
    if jobs and tail != 0:
        for job_id, upto, line in await _lines(list(found), tail):
            found[(job_id, upto)].append(line)
    return [
        joblog.render(
            found[(job.id, job.sequence)],
            joblog.Dropped(job.log_dropped_lines, job.log_dropped_bytes),
            tail=tail,
            has_lines=job.log_bytes > 0,
        )
        for job in jobs
    ]


async def _lines(wanted: list[tuple[str, int]], tail: int | None) -> list[tuple[str, int, str]]:
    """(job id, sequence, line) of each wanted (job id, up to sequence), oldest line first."""
    connection = connections.get("default")
    marks = ", ".join(
        f"({placeholder(connection, 2 * n + 1)}, CAST({placeholder(connection, 2 * n + 2)} "
        "AS INTEGER))"
        for n in range(len(wanted))
    )
    joined = f"""WITH "wanted" ("job_id", "upto") AS (VALUES {marks})
        SELECT "w"."job_id", "w"."upto", "l"."line", "l"."id", ROW_NUMBER() OVER (
            PARTITION BY "w"."job_id", "w"."upto" ORDER BY "l"."id" DESC) AS "from_end"
        FROM "wanted" AS "w" JOIN "job_log_lines" AS "l"
            ON "l"."job_id" = "w"."job_id" AND "l"."sequence" <= "w"."upto" """
    limit = "" if tail is None else f'WHERE "from_end" <= {int(tail)}'
    sql = f"""SELECT "job_id", "upto", "line" FROM ({joined}) AS "numbered" {limit}
        ORDER BY "job_id", "upto", "id" """
    rows = await connection.execute_query_dict(sql, [value for pair in wanted for value in pair])
    return [(row["job_id"], int(row["upto"]), row["line"]) for row in rows]
