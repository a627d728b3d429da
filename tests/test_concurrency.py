"""Racing use cases on PostgreSQL, where transactions really run side by side: one winner per
transition, one worker per job, and no report that slips in after a job completed.

SQLite has a single writer, so these races cannot happen there; the suite skips them on SQLite.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import InvalidTransition
from domain.policy import Actor
from domain.status import JobStatus
from models import Job
from service import jobs, users
from service.users import actor_of
from tests.factories import VALID_JOB_FIELDS, valid_submission

pytestmark = pytest.mark.postgres_only

S = JobStatus
RACE_TIMEOUT = 60.0
COMPARED_FIELDS = (
    "status",
    "progress",
    "error_message",
    "cancelled_reason",
    "started_at",
    "completed_at",
    "actual_time",
    "worker_id",
    "sequence",
    "updated_at",
    "attempts",
    "heartbeat_at",
    "log_bytes",
)


@pytest.fixture
def postgres(backend: str) -> None:
    """First among a test's fixtures: skips before any database work on SQLite."""
    if backend != "postgres":
        pytest.skip("SQLite has one writer: concurrent transitions are raced on PostgreSQL only")


async def race(*attempts) -> list[object]:
    """Runs the attempts at once; each result is the job returned or the exception raised."""
    async with asyncio.timeout(RACE_TIMEOUT):
        return await asyncio.gather(*attempts, return_exceptions=True)


async def rendering_job(owner: Actor, worker: Actor) -> Job:
    await jobs.submit_job(owner, valid_submission())
    claimed = await jobs.claim_next(worker)
    assert claimed is not None and claimed.status is S.RENDERING
    return claimed


def assert_same_row(stored: Job, returned: Job) -> None:
    for name in COMPARED_FIELDS:
        assert getattr(stored, name) == getattr(returned, name), name


@pytest.mark.parametrize("contest", ["complete against fail", "cancel"])
async def test_of_twenty_racing_transitions_exactly_one_wins(
    postgres: None, owner: Actor, worker: Actor, contest: str
) -> None:
    job = await rendering_job(owner, worker)
    if contest == "cancel":
        attempts = [jobs.cancel(job.id, f"reason {n}", actor=owner) for n in range(20)]
    else:
        attempts = [jobs.complete(job.id, actor=worker) for _ in range(10)]
        attempts += [jobs.fail(job.id, f"node {n} crashed", actor=worker) for n in range(10)]
    random.Random(7).shuffle(attempts)

    outcomes = await race(*attempts)

    unexpected = [o for o in outcomes if not isinstance(o, Job | InvalidTransition)]
    assert unexpected == []
    winners = [outcome for outcome in outcomes if isinstance(outcome, Job)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, InvalidTransition)]
    assert len(winners) == 1 and len(losers) == 19
    winner = winners[0]
    possible = {S.CANCELLED} if contest == "cancel" else {S.COMPLETED, S.FAILED}
    assert winner.status in possible
    for loser in losers:
        assert loser.found == winner.status.value
        assert f"is {winner.status.value}" in loser.message
    stored = await Job.get(id=job.id)
    assert_same_row(stored, winner)
    assert stored.sequence == job.sequence + 1  # one change, not one per attempt


async def queue_of(owner: Actor, count: int) -> list[Job]:
    """`count` QUEUED jobs with mixed priorities, some sharing a queued_at (the id decides)."""
    rng = random.Random(2026)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    await Job.bulk_create(
        [
            Job(
                user_id=owner.id,
                **VALID_JOB_FIELDS,
                status=S.QUEUED,
                sequence=3,
                priority=rng.randint(1, 10),
                queued_at=base + timedelta(seconds=rng.randint(0, count // 4)),
            )
            for _ in range(count)
        ]
    )
    return await Job.filter(status=S.QUEUED).order_by("-priority", "queued_at", "id")


async def test_eight_claimers_share_a_queue_without_overlap_and_in_order(
    postgres: None, owner: Actor
) -> None:
    queue = await queue_of(owner, 500)
    assert len(queue) == 500
    place = {job.id: rank for rank, job in enumerate(queue)}
    workers = [
        actor_of((await users.create_user(f"claimer{n}@example.com", role="worker")).user)
        for n in range(8)
    ]

    async def claim_until_empty(worker: Actor) -> list[str]:
        claimed: list[str] = []
        while (job := await jobs.claim_next(worker)) is not None:
            assert job.status is S.RENDERING and job.worker_id == worker.id
            claimed.append(job.id)
        return claimed

    by_worker = await race(*(claim_until_empty(worker) for worker in workers))

    assert not [o for o in by_worker if isinstance(o, BaseException)], by_worker
    every_claim = [job_id for claimed in by_worker for job_id in claimed]
    assert len(every_claim) == 500 and set(every_claim) == set(place)  # each job exactly once
    assert sum(1 for claimed in by_worker if claimed) >= 2, "the claimers did not overlap"
    holder = {
        job_id: worker.id
        for worker, claimed in zip(workers, by_worker, strict=True)
        for job_id in claimed
    }
    for stored in await Job.all():
        assert stored.status is S.RENDERING and stored.started_at is not None
        assert stored.worker_id == holder[stored.id]
    for claimed in by_worker:
        ranks = [place[job_id] for job_id in claimed]
        assert ranks == sorted(ranks), "a claimer got a job that was behind one it got later"


async def test_progress_racing_completion_never_lands_after_it(
    postgres: None, owner: Actor, worker: Actor
) -> None:
    job = await rendering_job(owner, worker)
    values = list(range(1, 100, 3))
    random.Random(11).shuffle(values)
    reports = [jobs.report_progress(job.id, v, f"at {v}%", actor=worker) for v in values]
    attempts = [*reports[:16], jobs.complete(job.id, actor=worker), *reports[16:]]

    outcomes = await race(*attempts)

    completion = outcomes[16]
    assert isinstance(completion, Job) and completion.status is S.COMPLETED
    report_outcomes = outcomes[:16] + outcomes[17:]
    unexpected = [o for o in report_outcomes if not isinstance(o, Job | InvalidTransition)]
    assert unexpected == []
    landed = sorted((o for o in report_outcomes if isinstance(o, Job)), key=lambda j: j.sequence)
    refused = [o for o in report_outcomes if isinstance(o, InvalidTransition)]
    assert len(landed) + len(refused) == len(values)
    assert all(o.found == "COMPLETED" for o in refused)
    assert all(j.status is S.RENDERING and j.sequence < completion.sequence for j in landed)
    progress = [j.progress for j in landed]
    assert progress == sorted(progress), "progress went backwards under concurrent reports"

    stored = await Job.get(id=job.id)
    assert stored.status is S.COMPLETED and stored.progress == 100
    assert_same_row(stored, completion)  # nothing changed after the completion
    lines = (await jobs.log_text(stored)).splitlines()
    for outcome, value in zip(report_outcomes, values, strict=True):
        written = sum(line.endswith(f"at {value}%") for line in lines)
        assert written == (1 if isinstance(outcome, Job) else 0), value
