"""A job's log, kept line by line with a cap: appendJobLog and reportProgress(log:) add stamped
lines, Job.logs(tail) reads them, the cap drops the oldest (and says so), an append costs the
same SQL however long the log already is, and refused appends write nothing.

Statements are counted through the "tortoise.db_client" logger (as tests/test_fanout_cost.py
does): the app runs in this process, so every statement a request sends is logged there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.events import JobEventKind
from domain.status import JobStatus
from models import Job, JobLogLine
from service import clock, jobs, settings
from service.events import RecordingPublisher
from testkit.sql_log import SqlLog, sql_log
from tests.conftest import Account
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient
from tests.operations import CLAIM, mutate, submit

APPEND = "mutation($id: ID!, $lines: [String!]!) { appendJobLog(id: $id, lines: $lines) { id } }"
LOGS = "query($id: ID!, $tail: Int) { job(id: $id) { logs(tail: $tail) } }"
REPORT_WITH_LOG = """
mutation($id: ID!, $p: Int!, $log: String) { reportProgress(id: $id, progress: $p, log: $log) {
  progress logs } }
"""
CANCEL = 'mutation($id: ID!) { cancelJob(id: $id, reason: "brief changed") { status } }'
COMPLETE = "mutation($id: ID!) { completeJob(id: $id) { status } }"
STAMPED = re.compile(r"^\[([^\]]+)\] (.*)$")


# --- helpers ---------------------------------------------------------------------------------


async def rendering_job(api: GraphQLClient, accounts: dict[str, Account]) -> str:
    """A job submitted by "user" and claimed by "worker"; its id."""
    job_id = await submit(api, accounts["user"].token)
    claimed = await mutate(api, accounts["worker"].token, CLAIM)
    assert claimed["claimJob"]["id"] == job_id
    return job_id


async def read_logs(
    api: GraphQLClient, token: str, job_id: str, tail: int | None = None
) -> str | None:
    response = await api(LOGS, {"id": job_id, "tail": tail}, token)
    assert not response.errors, response.errors
    return response.data["job"]["logs"]


async def stored_lines(job_id: str) -> list[str]:
    rows = await JobLogLine.filter(job_id=job_id).order_by("id").values_list("line", flat=True)
    return list(rows)


async def state_of(job_id: str) -> tuple[Any, ...]:
    """Everything a refused append must leave as it was: the row and its lines."""
    job = await Job.get(id=job_id)
    return (
        job.status,
        job.sequence,
        job.updated_at,
        job.heartbeat_at,
        job.log_bytes,
        job.log_dropped_lines,
        job.log_dropped_bytes,
        await stored_lines(job_id),
    )


def texts_of(log: str) -> list[str]:
    """The text of each line of a log, without its stamp."""
    texts = []
    for line in log.split("\n"):
        match = STAMPED.match(line)
        assert match, f"not a stamped line: {line!r}"
        texts.append(match.group(2))
    return texts


@contextlib.contextmanager
def log_limit(limit_bytes: int) -> Iterator[None]:
    previous = settings.configure(
        dataclasses.replace(settings.current(), log_limit_bytes=limit_bytes)
    )
    try:
        yield
    finally:
        settings.configure(previous)


@pytest.fixture
def statements() -> Iterator[SqlLog]:
    with sql_log(recording=False, propagate=False) as log:
        yield log


def parameter_bytes(values: Any) -> int:
    """The bytes of the values a statement sends (nested lists for multi-row statements)."""
    if values is None:
        return 0
    if isinstance(values, list | tuple):
        return sum(parameter_bytes(value) for value in values)
    return len(str(values).encode("utf-8"))


# --- appending and reading -------------------------------------------------------------------


async def test_appended_lines_are_stamped_with_utc_time_and_read_in_order(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    worker = accounts["worker"].token
    before = datetime.now(UTC).replace(microsecond=0)
    await mutate(api, worker, APPEND, id=job_id, lines=["first", "  second, indented"])
    await mutate(api, worker, APPEND, id=job_id, lines=["third é ✓"])
    after = datetime.now(UTC)

    log = await read_logs(api, accounts["user"].token, job_id)
    assert log is not None
    lines = log.split("\n")
    assert texts_of(log) == ["first", "  second, indented", "third é ✓"]
    for line in lines:
        stamp = datetime.fromisoformat(STAMPED.match(line).group(1))
        assert stamp.utcoffset().total_seconds() == 0
        assert before <= stamp <= after
    # What was read is what is stored, one row per line.
    assert await stored_lines(job_id) == lines
    # The holder reads the same log.
    assert await read_logs(api, worker, job_id) == log


async def test_tail_returns_the_last_lines(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    token = accounts["user"].token
    await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=["a", "b", "c", "d"])

    assert texts_of(await read_logs(api, token, job_id, tail=2)) == ["c", "d"]
    assert texts_of(await read_logs(api, token, job_id, tail=1)) == ["d"]
    assert texts_of(await read_logs(api, token, job_id, tail=4)) == ["a", "b", "c", "d"]
    assert texts_of(await read_logs(api, token, job_id, tail=50)) == ["a", "b", "c", "d"]
    assert await read_logs(api, token, job_id, tail=50) == await read_logs(api, token, job_id)


async def test_several_tails_of_several_jobs_in_one_request(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    """The log loader batches by tail: each field still gets its own job's lines."""
    first = await rendering_job(api, accounts)
    second = await rendering_job(api, accounts)
    worker = accounts["worker"].token
    await mutate(api, worker, APPEND, id=first, lines=["1a", "1b", "1c"])
    await mutate(api, worker, APPEND, id=second, lines=["2a", "2b"])
    response = await api(
        """query($a: ID!, $b: ID!) {
          a: job(id: $a) { whole: logs last: logs(tail: 1) two: logs(tail: 2) }
          b: job(id: $b) { whole: logs last: logs(tail: 1) two: logs(tail: 2) }
        }""",
        {"a": first, "b": second},
        accounts["user"].token,
    )
    assert not response.errors, response.errors
    answered = {
        name: {field: texts_of(text) for field, text in job.items()}
        for name, job in response.data.items()
    }
    assert answered == {
        "a": {"whole": ["1a", "1b", "1c"], "last": ["1c"], "two": ["1b", "1c"]},
        "b": {"whole": ["2a", "2b"], "last": ["2b"], "two": ["2a", "2b"]},
    }


async def test_a_tail_of_zero_is_empty_text_for_a_job_with_a_log(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=["a", "b"])
    assert await read_logs(api, accounts["user"].token, job_id, tail=0) == ""


async def test_a_negative_tail_is_bad_user_input_naming_tail(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=["a"])
    response = await api(LOGS, {"id": job_id, "tail": -1}, accounts["user"].token)
    assert response.codes == ["BAD_USER_INPUT"]
    assert [item["field"] for item in response.errors[0]["extensions"]["fields"]] == ["tail"]


async def test_a_job_that_logged_nothing_has_null_logs(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    token = accounts["user"].token
    assert await read_logs(api, token, job_id) is None
    assert await read_logs(api, token, job_id, tail=3) is None
    assert await read_logs(api, token, job_id, tail=0) is None
    assert await JobLogLine.filter(job_id=job_id).count() == 0


async def test_a_line_break_inside_a_line_never_makes_an_unstamped_line(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    lines = ["Traceback (most recent call last):\n  File render.js, line 3"]
    response = await api(APPEND, {"id": job_id, "lines": lines}, accounts["worker"].token)
    if response.errors:  # refusing it is one way to keep the rule
        assert response.codes == ["BAD_USER_INPUT"]
        assert [f["field"] for f in response.errors[0]["extensions"]["fields"]] == ["lines[0]"]
        return
    log = await read_logs(api, accounts["user"].token, job_id)
    assert all(STAMPED.match(line) for line in log.split("\n")), log
    assert len((await read_logs(api, accounts["user"].token, job_id, tail=1)).split("\n")) == 1


async def test_report_progress_with_a_log_line_appends_to_the_same_log(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    worker = accounts["worker"].token
    await mutate(api, worker, APPEND, id=job_id, lines=["aerender started"])
    reported = await mutate(api, worker, REPORT_WITH_LOG, id=job_id, p=40, log="frame 40 of 100")
    assert reported["reportProgress"]["progress"] == 40
    assert texts_of(reported["reportProgress"]["logs"]) == ["aerender started", "frame 40 of 100"]
    # A late report (lower progress) still appends its line.
    await mutate(api, worker, REPORT_WITH_LOG, id=job_id, p=30, log="late line")
    await mutate(api, worker, APPEND, id=job_id, lines=["after the reports"])
    log = await read_logs(api, accounts["user"].token, job_id)
    assert texts_of(log) == [
        "aerender started",
        "frame 40 of 100",
        "late line",
        "after the reports",
    ]
    assert (await Job.get(id=job_id)).progress == 40
    assert len(await stored_lines(job_id)) == 4


async def test_an_append_by_the_holder_renews_its_lease_and_an_admins_does_not(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    try:
        clock.advance(120)
        await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=["still here"])
        renewed = (await Job.get(id=job_id)).heartbeat_at
        assert abs((renewed - clock.now()).total_seconds()) < 2
        clock.advance(120)
        await mutate(api, accounts["admin"].token, APPEND, id=job_id, lines=["admin note"])
        assert (await Job.get(id=job_id)).heartbeat_at == renewed
    finally:
        clock.reset()


async def test_an_append_is_one_log_event_for_followers(
    api: GraphQLClient, accounts: dict[str, Account], recorder: RecordingPublisher
) -> None:
    job_id = await rendering_job(api, accounts)
    recorder.clear()
    await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=["a", "b", "c"])
    stored = await Job.get(id=job_id)
    assert [(e.kind, e.job_id, e.sequence) for e in recorder.events] == [
        (JobEventKind.LOG, job_id, stored.sequence)
    ]


# --- the cap ---------------------------------------------------------------------------------

LIMIT = 16 * 1024
APPENDED = 2000


def line_text(number: int) -> str:
    # Multi-byte characters: the cap counts UTF-8 bytes, not characters.
    return f"line {number:05d} " + "é" * 20 + "x" * 40


@pytest.mark.parametrize("batch", [25, 300], ids=["small-appends", "appends-past-the-cap"])
async def test_the_cap_drops_the_oldest_lines_and_says_so(
    api: GraphQLClient, accounts: dict[str, Account], batch: int
) -> None:
    worker = accounts["worker"].actor
    job = await jobs.submit_job(accounts["user"].actor, valid_submission())
    assert (await jobs.claim_next(worker)).id == job.id
    appended = [line_text(number) for number in range(APPENDED)]
    with log_limit(LIMIT):
        for start in range(0, APPENDED, batch):
            await jobs.append_log(job.id, appended[start : start + batch], actor=worker)

    row = await Job.get(id=job.id)
    kept = await stored_lines(job.id)
    kept_texts = [STAMPED.match(line).group(2) for line in kept]
    stamp_bytes = len(kept[0].encode()) - len(kept_texts[0].encode())

    # The kept bytes: what the row says is what is stored, within the cap.
    kept_bytes = sum(len(line.encode("utf-8")) + 1 for line in kept)
    assert row.log_bytes == kept_bytes
    assert sum(await JobLogLine.filter(job_id=job.id).values_list("size", flat=True)) == kept_bytes
    assert kept_bytes <= LIMIT
    assert kept_bytes >= LIMIT // 2  # it trims to three quarters, not to nothing
    # The newest lines are all there, in order; the oldest are gone.
    assert 0 < len(kept) < APPENDED
    assert kept_texts == appended[-len(kept) :]
    # The bookkeeping of what was dropped agrees with what is missing.
    appended_bytes = sum(stamp_bytes + len(text.encode("utf-8")) + 1 for text in appended)
    assert row.log_dropped_lines == APPENDED - len(kept)
    assert row.log_dropped_bytes == appended_bytes - kept_bytes

    # The log as read: one marker line saying how much was dropped, then the kept lines.
    for log in (await jobs.log_text(row), await read_logs(api, accounts["admin"].token, job.id)):
        marker, *rest = log.split("\n")
        assert rest == kept
        assert "line 00000" not in log
        assert "dropped" in marker
        assert f"{row.log_dropped_lines:,} earlier lines" in marker
        assert f"({row.log_dropped_bytes:,} bytes)" in marker
    # A tail shorter than the kept lines shows no marker; a longer one shows it first.
    admin = accounts["admin"].token
    assert (await read_logs(api, admin, job.id, tail=3)).split("\n") == kept[-3:]
    assert (await read_logs(api, admin, job.id, tail=len(kept))).split("\n") == kept
    longer = (await read_logs(api, admin, job.id, tail=len(kept) + 1)).split("\n")
    assert longer[1:] == kept and "dropped" in longer[0]


async def test_one_call_of_many_short_lines_past_the_cap_keeps_the_newest(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    """A trim that has to read the oldest lines in several batches to find where to cut."""
    job_id = await rendering_job(api, accounts)
    texts = [f"{n:03d}" for n in range(1000)]
    with log_limit(LIMIT):
        await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=texts)
    row = await Job.get(id=job_id)
    kept = await stored_lines(job_id)
    kept_bytes = sum(len(line.encode()) + 1 for line in kept)
    assert row.log_bytes == kept_bytes <= LIMIT * 3 // 4
    assert [STAMPED.match(line).group(2) for line in kept] == texts[-len(kept) :]
    assert row.log_dropped_lines == 1000 - len(kept) > 500
    assert row.log_dropped_bytes == sum(len(line.encode()) + 1 for line in kept[:1]) * (
        1000 - len(kept)
    )
    log = await read_logs(api, accounts["user"].token, job_id)
    assert log.split("\n")[1:] == kept and f"{row.log_dropped_lines:,} earlier" in log


async def test_a_trim_makes_room_for_a_quarter_of_the_cap(accounts: dict[str, Account]) -> None:
    """Past the cap the log is cut down to three quarters of it, so that trims are rare."""
    worker = accounts["worker"].actor
    job = await jobs.submit_job(accounts["user"].actor, valid_submission())
    assert (await jobs.claim_next(worker)).id == job.id
    kept_before = 0
    with log_limit(LIMIT):
        for number in range(APPENDED):
            await jobs.append_log(job.id, [line_text(number)], actor=worker)
            row = await Job.get(id=job.id)
            if row.log_dropped_lines:
                break
            kept_before = row.log_bytes
    assert row.log_dropped_lines, "the cap was never reached"
    assert kept_before <= LIMIT < kept_before + len(line_text(0).encode()) + 30
    assert row.log_bytes <= LIMIT * 3 // 4
    assert row.log_bytes > LIMIT * 3 // 4 - 2 * (len(line_text(0).encode()) + 30)


async def test_an_append_costs_the_same_sql_for_a_short_and_a_long_log(
    api: GraphQLClient, accounts: dict[str, Account], statements: SqlLog
) -> None:
    worker = accounts["worker"].token
    short = await rendering_job(api, accounts)
    long = await rendering_job(api, accounts)
    with log_limit(1024 * 1024):
        await mutate(api, worker, APPEND, id=short, lines=["one line"])
        await mutate(
            api, worker, APPEND, id=long, lines=[f"{n:04d} " + "x" * 1019 for n in range(100)]
        )
        assert (await Job.get(id=long)).log_bytes > 100 * 1024

        with statements.window() as seen_short:
            await mutate(api, worker, APPEND, id=short, lines=["measured line"])
        with statements.window() as seen_long:
            await mutate(api, worker, APPEND, id=long, lines=["measured line"])
    on_short = [(statement.one_line, statement.parameters) for statement in seen_short]
    on_long = [(statement.one_line, statement.parameters) for statement in seen_long]

    assert on_short, "no statement was logged: is the tortoise.db_client logger still used?"
    assert len(on_long) == len(on_short), (on_short, on_long)
    assert Counter(sql for sql, _ in on_long) == Counter(sql for sql, _ in on_short)
    short_bytes = sum(parameter_bytes(values) for _, values in on_short)
    long_bytes = sum(parameter_bytes(values) for _, values in on_long)
    # Equal but for the digits of log_bytes (3 against 6) and a timestamp whose microseconds
    # happen to be 0 (its text drops them); the old code sent the whole 100 KiB log back.
    assert abs(long_bytes - short_bytes) <= 32, (short_bytes, long_bytes)
    assert max(parameter_bytes(values) for _, values in on_long) < 2048
    # Neither statement list reads the log back (no SELECT on job_log_lines).
    assert not [sql for sql, _ in on_long if "job_log_lines" in sql and sql.startswith("SELECT")]
    # And the measured appends did append.
    assert (await stored_lines(long))[-1].endswith("] measured line")
    assert len(await stored_lines(long)) == 101
    assert texts_of("\n".join(await stored_lines(short))) == ["one line", "measured line"]


# --- refusals --------------------------------------------------------------------------------


async def test_another_worker_cannot_append_and_nothing_is_written(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=["mine"])
    before = await state_of(job_id)
    response = await api(APPEND, {"id": job_id, "lines": ["not mine"]}, accounts["worker2"].token)
    assert response.codes == ["NOT_FOUND"]  # a worker does not see jobs it does not hold
    assert response.data is None
    assert await state_of(job_id) == before


async def test_the_owner_cannot_append_to_its_own_job(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    before = await state_of(job_id)
    response = await api(APPEND, {"id": job_id, "lines": ["owner says"]}, accounts["user"].token)
    assert response.codes == ["FORBIDDEN"]  # the owner sees the job but does not render it
    assert await state_of(job_id) == before


async def test_the_holder_cannot_append_once_the_job_is_cancelled(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=["frame 1"])
    await mutate(api, accounts["user"].token, CANCEL, id=job_id)
    before = await state_of(job_id)
    response = await api(APPEND, {"id": job_id, "lines": ["frame 2"]}, accounts["worker"].token)
    assert response.codes == ["INVALID_TRANSITION"]
    assert response.errors[0]["extensions"]["from"] == "CANCELLED"
    assert await state_of(job_id) == before


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([], "lines"),
        ([f"line {n}" for n in range(1001)], "lines"),
        (["fine", "nul \x00 inside", "fine too"], "lines[1]"),
        (["   "], "lines[0]"),
        (["ok", "x" * 4097], "lines[1]"),
    ],
    ids=["empty", "1001-lines", "nul-byte", "blank", "too-long"],
)
async def test_malformed_lines_are_bad_user_input_and_write_nothing(
    api: GraphQLClient, accounts: dict[str, Account], lines: list[str], field: str
) -> None:
    job_id = await rendering_job(api, accounts)
    before = await state_of(job_id)
    response = await api(APPEND, {"id": job_id, "lines": lines}, accounts["worker"].token)
    assert response.codes == ["BAD_USER_INPUT"]
    assert [item["field"] for item in response.errors[0]["extensions"]["fields"]] == [field]
    assert await state_of(job_id) == before


async def test_a_thousand_lines_in_one_call_are_accepted(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await rendering_job(api, accounts)
    lines = [f"line {n}" for n in range(1000)]
    await mutate(api, accounts["worker"].token, APPEND, id=job_id, lines=lines)
    assert [STAMPED.match(line).group(2) for line in await stored_lines(job_id)] == lines


async def test_an_admin_appends_to_a_job_in_any_status(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    admin, user, worker = (accounts[name].token for name in ("admin", "user", "worker"))
    completed = await submit(api, user)
    failed = await submit(api, user)
    rendering = await submit(api, user)
    for expected in (completed, failed, rendering):
        assert (await mutate(api, worker, CLAIM))["claimJob"]["id"] == expected
    await mutate(api, worker, COMPLETE, id=completed)
    await mutate(
        api, worker, 'mutation($id: ID!) { failJob(id: $id, error: "x") { id } }', id=failed
    )
    queued = await submit(api, user)
    cancelled = await submit(api, user)
    await mutate(api, user, CANCEL, id=cancelled)

    expected_status = {
        queued: JobStatus.QUEUED,
        cancelled: JobStatus.CANCELLED,
        completed: JobStatus.COMPLETED,
        failed: JobStatus.FAILED,
        rendering: JobStatus.RENDERING,
    }
    for job_id, status in expected_status.items():
        sequence = (await Job.get(id=job_id)).sequence
        await mutate(api, admin, APPEND, id=job_id, lines=["note from the admin", "second note"])
        stored = await Job.get(id=job_id)
        assert stored.status is status  # an append moves no job
        assert stored.sequence == sequence + 1
        assert texts_of(await read_logs(api, user, job_id, tail=2)) == [
            "note from the admin",
            "second note",
        ]
