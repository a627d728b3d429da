"""`rendertrack jobs list|show|cancel|retry`, run as real subprocesses on the test's database
(both backends): what an operator without a browser reads and changes."""

from __future__ import annotations

import json
from pathlib import Path

from domain.events import Duty
from domain.status import JobStatus
from models import Job
from service import event_store, jobs
from tests.conftest import Account
from tests.factories import valid_submission
from tests.test_cli import assert_refused, rendertrack


async def test_list_shows_the_jobs_with_owners_and_workers_and_filters_them(
    db: str, accounts: dict[str, Account], tmp_path: Path
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    rendering = await jobs.submit_job(user.actor, valid_submission(project_name="Trailer"))
    queued = await jobs.submit_job(user.actor, valid_submission(project_name="Teaser"))
    await jobs.claim_next(worker.actor)
    await jobs.report_progress(rendering.id, 42, actor=worker.actor)

    table = rendertrack("jobs", "list", database_url=db, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    header, *rows = [line.split("\t") for line in table.stdout.splitlines()]
    assert header == [
        "id",
        "status",
        "progress",
        "priority",
        "owner",
        "worker",
        "project",
        "output",
    ]
    assert [row[:2] for row in rows] == [[queued.id, "QUEUED"], [rendering.id, "RENDERING"]]
    assert rows[1][2] == "42" and rows[1][4:7] == [
        "user@example.com",
        "worker@example.com",
        "Trailer",
    ]
    assert rows[0][5:7] == ["-", "Teaser"]  # no worker yet
    assert "2 job(s)" in table.stderr

    only = rendertrack(
        "jobs", "list", "--status", "rendering,completed", "--json", database_url=db, cwd=tmp_path
    )
    assert [job["id"] for job in json.loads(only.stdout)] == [rendering.id]
    searched = rendertrack("jobs", "list", "--search", "TEASER", database_url=db, cwd=tmp_path)
    assert [line.split("\t")[0] for line in searched.stdout.splitlines()[1:]] == [queued.id]


async def test_show_prints_the_job_its_recent_history_and_its_log(
    db: str, accounts: dict[str, Account], tmp_path: Path
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    job = await jobs.submit_job(user.actor, valid_submission())
    await jobs.claim_next(worker.actor)
    await jobs.report_progress(job.id, 30, "frame 30 of 100", actor=worker.actor)

    shown = rendertrack("jobs", "show", job.id, "--json", database_url=db, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    assert (details["status"], details["progress"], details["worker"]) == (
        "RENDERING",
        30,
        "worker@example.com",
    )
    assert [event["status"] for event in details["history"]][-2:] == ["RENDERING", "RENDERING"]
    assert details["history"][-1]["progress"] == 30
    assert "frame 30 of 100" in details["log"]

    text = rendertrack("jobs", "show", job.id, database_url=db, cwd=tmp_path)
    assert "status:      RENDERING" in text.stdout and "frame 30 of 100" in text.stdout


async def test_cancel_and_retry_change_the_job_and_are_recorded_as_the_systems_doing(
    db: str, accounts: dict[str, Account], tmp_path: Path
) -> None:
    job = await jobs.submit_job(accounts["user"].actor, valid_submission())

    cancelled = rendertrack(
        "jobs",
        "cancel",
        job.id,
        "--reason",
        "client pulled the spot",
        database_url=db,
        cwd=tmp_path,
    )
    assert cancelled.returncode == 0, cancelled.stderr
    assert "client pulled the spot" in cancelled.stderr
    assert (await Job.get(id=job.id)).status == JobStatus.CANCELLED
    last = (await event_store.job_events(job.id, 0))[-1]
    assert (last.status, last.duty, last.actor_id, last.reason) == (
        JobStatus.CANCELLED,
        Duty.SYSTEM,
        None,
        "client pulled the spot",
    )

    again = rendertrack(
        "jobs", "cancel", job.id, "--reason", "twice", database_url=db, cwd=tmp_path
    )
    assert "CANCELLED" in assert_refused(again)

    retried = rendertrack("jobs", "retry", job.id, database_url=db, cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert (await Job.get(id=job.id)).status == JobStatus.QUEUED


async def test_unknown_jobs_and_bad_options_are_one_line_refusals(db: str, tmp_path: Path) -> None:
    missing = rendertrack("jobs", "show", "x" * 5000, database_url=db, cwd=tmp_path)
    assert "was not found" in assert_refused(missing)
    retry = rendertrack("jobs", "retry", "nojob", database_url=db, cwd=tmp_path)
    assert "was not found" in assert_refused(retry)
    bad = rendertrack("jobs", "list", "--status", "bogus", database_url=db, cwd=tmp_path)
    assert bad.returncode == 2 and "'bogus' is not a status" in bad.stderr
    assert "Traceback" not in bad.stderr
