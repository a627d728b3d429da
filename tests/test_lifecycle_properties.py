"""Random sequences of use cases on random jobs, on the real database, keep the lifecycle's
invariants (ARCHITECTURE.md, "The job lifecycle").

After every operation, for every job:
- progress is in 0..100, is 100 exactly when COMPLETED (a report of 100 while RENDERING is held
  at 99: Nexrender reports 100 when aerender ends and still runs its postrender actions), and is
  0 before the job ever rendered;
- completed_at is set exactly in the terminal statuses; started_at <= completed_at;
  actual_time is the whole seconds between them, and None when the job never started;
- a RENDERING job has a start and a worker; a waiting job (PENDING, VALIDATING, QUEUED) has
  neither;
- a terminal job changes only by retry;
- an operation succeeds exactly when the transition table and the actor's rights allow it, and
  then has its documented effect on its job and no other; a refused one (a DomainError) leaves
  every row exactly as it was. Any other exception fails the test.

Hypothesis cannot run an async test, so each example runs its scenario with asyncio.run and opens
the database itself; the tables are emptied and each example creates users of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.database import open_database
from domain.errors import DomainError
from domain.lifecycle import TERMINAL_STATUSES
from domain.policy import Actor
from domain.status import JobStatus
from domain.validation import JobSubmission
from models import Job
from service import job_logs, jobs, users
from service.users import actor_of
from tests.databases import empty_tables

S = JobStatus
WAITING = frozenset({S.PENDING, S.VALIDATING, S.QUEUED})

Row = dict[str, Any]

# --- operations ----------------------------------------------------------------------------

# A job by its index (modulo the number of jobs), or RENDERING: a rendering job if there is one.
RENDERING_JOB = -1
job_index = st.one_of(st.integers(min_value=0, max_value=7), st.just(RENDERING_JOB))
# Mostly someone entitled ("holder": the worker holding the job, or worker0 when none does),
# sometimes someone who is not.
manager = st.sampled_from(["owner"] * 3 + ["admin", "system", "stranger", "worker0"])
reporter = st.sampled_from(["holder"] * 4 + ["admin", "system", "worker1", "owner"])

valid_paths = st.sampled_from([True, True, True, False])  # False: ends FAILED at validation
submits = st.tuples(st.just("submit"), valid_paths, st.integers(1, 10))
claims = st.tuples(st.just("claim"), st.sampled_from(["worker0", "worker1"]))
# A burst of reports on one job, as a worker sends them (values in any order: reports may arrive
# late); `expand` turns it into one "progress" operation per value.
reports = st.tuples(
    st.just("progress burst"),
    st.one_of(*[st.just(RENDERING_JOB)] * 3, job_index),
    st.lists(st.integers(0, 100), min_size=1, max_size=4),
    st.one_of(st.none(), st.sampled_from(["frame", "encoding pass"])),
    reporter,
)
operations = st.one_of(
    # Weighted by repetition: enough claims that operations often find a RENDERING job;
    # progress reports are a render's most frequent message.
    submits,
    *[claims] * 3,
    *[reports] * 3,
    st.tuples(st.just("complete"), job_index, reporter),
    st.tuples(st.just("fail"), job_index, reporter),
    st.tuples(st.just("requeue"), job_index, reporter),
    st.tuples(st.just("cancel"), job_index, manager),
    st.tuples(st.just("retry"), job_index, manager),
    st.tuples(st.just("set_priority"), job_index, st.integers(1, 10), manager),
)


def expand(ops: list[tuple]) -> list[tuple]:
    expanded: list[tuple] = []
    for op in ops:
        if op[0] == "progress burst":
            _, target, values, log, who = op
            expanded += [("progress", target, value, log, who) for value in values]
        else:
            expanded.append(op)
    return expanded


def submission(*, valid: bool, priority: int) -> JobSubmission:
    return JobSubmission(
        project_name="Promo",
        output_name="promo.mp4",
        template_path="C:\\jobs\\promo.aep" if valid else "jobs/promo.aep",  # relative: FAILED
        data_path="C:\\jobs\\promo.json",
        output_path="C:\\renders\\promo.mp4",
        priority=priority,
    )


# --- the scenario --------------------------------------------------------------------------


@dataclass
class World:
    actors: dict[str, Actor | None]
    job_ids: list[str] = field(default_factory=list)

    def job(self, index: int, rows: dict[str, Row]) -> str | None:
        if not self.job_ids:
            return None
        if index == RENDERING_JOB:
            rendering = [id_ for id_ in self.job_ids if S(rows[id_]["status"]) is S.RENDERING]
            return rendering[-1] if rendering else self.job_ids[0]
        return self.job_ids[index % len(self.job_ids)]


async def snapshot() -> dict[str, Row]:
    """Every stored job, with its log as read."""
    stored = await Job.all()
    logs = dict(zip((job.id for job in stored), await job_logs.read_logs(stored), strict=True))
    return {row["id"]: {**row, "logs": logs[row["id"]]} for row in await Job.all().values()}


def queue_key(row: Row) -> tuple[int, Any, str]:
    return (-row["priority"], row["queued_at"], row["id"])


def actor_name(op: tuple, row: Row | None, world: World) -> str:
    """The actor an operation runs as, "holder" resolved against the job's stored worker."""
    if op[0] == "submit":
        return "owner"
    name = op[-1]
    if name != "holder":
        return name
    worker_id = row["worker_id"] if row is not None else None
    for candidate in ("worker0", "worker1"):
        actor = world.actors[candidate]
        if actor is not None and actor.id == worker_id:
            return candidate
    return "worker0"


def may_manage(actor: str, row: Row, world: World) -> bool:
    who = world.actors[actor]
    return who is None or who.is_admin or who.id == row["user_id"]


def may_work(actor: str, row: Row, world: World) -> bool:
    who = world.actors[actor]
    return who is None or who.is_admin or who.id == row["worker_id"]


def allowed(op: tuple, actor: str, row: Row, world: World) -> bool:
    """Whether `op` by `actor` on the job stored as `row` must succeed."""
    kind, status = op[0], S(row["status"])
    if kind in {"progress", "complete", "fail", "requeue"}:
        return status is S.RENDERING and may_work(actor, row, world)
    if kind in {"cancel", "set_priority"}:
        return status not in TERMINAL_STATUSES and may_manage(actor, row, world)
    assert kind == "retry"
    return status in {S.FAILED, S.CANCELLED} and may_manage(actor, row, world)


async def perform(op: tuple, name: str, job_id: str | None, world: World) -> Job | None:
    kind, actor = op[0], world.actors.get(name)
    if kind == "submit":
        owner = world.actors["owner"]
        assert owner is not None
        job = await jobs.submit_job(owner, submission(valid=op[1], priority=op[2]))
        world.job_ids.append(job.id)
        return job
    if kind == "claim":
        assert actor is not None
        return await jobs.claim_next(actor)
    assert job_id is not None
    if kind == "progress":
        return await jobs.report_progress(job_id, op[2], op[3], actor=actor)
    if kind == "complete":
        return await jobs.complete(job_id, actor=actor)
    if kind == "fail":
        return await jobs.fail(job_id, "the render node ran out of memory", actor=actor)
    if kind == "requeue":
        return await jobs.requeue(job_id, actor=actor)
    if kind == "cancel":
        return await jobs.cancel(job_id, "the client changed the brief", actor=actor)
    if kind == "retry":
        return await jobs.retry(job_id, actor=actor)
    assert kind == "set_priority"
    return await jobs.set_priority(job_id, op[2], actor=actor)


def check_invariants(rows: dict[str, Row]) -> None:
    for row in rows.values():
        check_row(row)


def check_row(row: Row) -> None:
    status, progress = S(row["status"]), row["progress"]
    started, completed = row["started_at"], row["completed_at"]

    def holds(condition: bool, rule: str) -> None:
        assert condition, f"{rule}: {status.value} job {row}"

    holds(0 <= progress <= 100, "progress in 0..100")
    holds((progress == 100) == (status is S.COMPLETED), "progress is 100 exactly when COMPLETED")
    if progress > 0:
        holds(started is not None, "progress moves only once the job started")
    holds((completed is not None) == (status in TERMINAL_STATUSES), "completed_at iff final")
    if started is not None and completed is not None:
        holds(started <= completed, "started_at <= completed_at")
        seconds = int((completed - started).total_seconds())
        holds(row["actual_time"] == seconds, f"actual_time is {seconds}")
    if started is None:
        holds(row["actual_time"] is None, "no actual_time without a start")
    if status is S.RENDERING:
        holds(started is not None and row["worker_id"] is not None, "rendering: started, held")
    if status in WAITING:
        holds(progress == 0 and started is None, "a waiting job has not started")
        holds(row["worker_id"] is None, "a waiting job is held by no worker")
    if status is S.FAILED:
        holds(bool(row["error_message"]), "a FAILED job says why")
    if status is S.CANCELLED:
        holds(bool(row["cancelled_reason"]), "a CANCELLED job says why")


def check_effect(
    op: tuple, job_id: str | None, result: Job | None, before: Row | None, after: Row, world: World
) -> None:
    """The documented effect of a successful `op` on its job (`before` -> `after`)."""
    kind = op[0]
    if kind == "submit":
        assert before is None
        assert S(after["status"]) is (S.QUEUED if op[1] else S.FAILED), after
        assert after["priority"] == op[2]
        if not op[1]:
            assert "template_path" in after["error_message"]
        return
    assert before is not None
    assert result is not None, f"{op} returned nothing"
    assert result.id == job_id, f"{op} returned job {result.id}, expected {job_id}"
    assert S(result.status) is S(after["status"]), f"{op} returned a job unlike the stored one"
    assert result.sequence == after["sequence"], f"{op} returned a job unlike the stored one"
    status = S(after["status"])
    if kind == "claim":
        worker = world.actors[op[1]]
        assert worker is not None
        assert status is S.RENDERING and after["worker_id"] == worker.id
        assert after["progress"] == 0
    elif kind == "progress":
        assert status is S.RENDERING
        expected = max(before["progress"], min(op[2], 99))
        assert after["progress"] == expected, "progress went backwards or reached 100 early"
        if op[3] is not None:
            assert after["logs"].endswith(op[3])
    elif kind == "complete":
        assert status is S.COMPLETED
    elif kind == "fail":
        assert status is S.FAILED and after["error_message"] == "the render node ran out of memory"
        assert after["progress"] == before["progress"]
    elif kind == "cancel":
        assert status is S.CANCELLED and after["cancelled_reason"] == "the client changed the brief"
    elif kind == "requeue":
        assert status is S.QUEUED and after["queued_at"] == before["queued_at"]
    elif kind == "retry":
        valid = after["template_path"] == "C:\\jobs\\promo.aep"
        assert status is (S.QUEUED if valid else S.FAILED)
        assert f"retried after {S(before['status']).value}" in after["logs"]
        assert after["cancelled_reason"] is None
    else:
        assert kind == "set_priority"
        assert status is S(before["status"]) and after["priority"] == op[2]


async def scenario(url: str, ops: list[tuple]) -> None:
    async with open_database(url):
        await empty_tables()
        tag = uuid.uuid4().hex[:12]
        world = World(actors={"system": None})
        for name, role in [
            ("owner", "user"),
            ("stranger", "user"),
            ("admin", "admin"),
            ("worker0", "worker"),
            ("worker1", "worker"),
        ]:
            created = await users.create_user(f"{name}-{tag}@example.com", name, role)
            world.actors[name] = actor_of(created.user)

        for op in ops:
            kind = op[0]
            before = await snapshot()
            job_id = None if kind in {"submit", "claim"} else world.job(op[1], before)
            if kind not in {"submit", "claim"} and job_id is None:
                continue  # no job yet
            name = actor_name(op, before.get(job_id) if job_id else None, world)
            if kind == "claim":
                queued = [row for row in before.values() if S(row["status"]) is S.QUEUED]
                job_id = min(queued, key=queue_key)["id"] if queued else None
                must_succeed = True
            elif kind == "submit":
                must_succeed = True
            else:
                must_succeed = allowed(op, name, before[job_id], world)

            try:
                result = await perform(op, name, job_id, world)
            except DomainError as refusal:
                event(f"{kind} refused")
                after = await snapshot()
                assert not must_succeed, f"{op} was refused: {refusal.message}"
                assert after == before, f"the refused {op} changed a row"
                check_invariants(after)
                continue

            event(f"{kind} done")
            after = await snapshot()
            assert must_succeed, f"{op} succeeded on a {before[job_id]['status']} job"
            if kind == "submit":
                job_id = world.job_ids[-1]
            if kind == "claim" and job_id is None:
                assert result is None, "claim_next handed out a job with none queued"
            elif kind == "set_priority" and before[job_id]["priority"] == op[2]:
                assert after == before, "setting the same priority changed a row"
            else:
                check_effect(op, job_id, result, before.get(job_id), after[job_id], world)
            for other, row in before.items():
                if other != job_id:
                    assert after[other] == row, f"{op} on {job_id} changed job {other}"
            terminal = job_id in before and S(before[job_id]["status"]) in TERMINAL_STATUSES
            if terminal:
                assert kind == "retry", f"{op} changed a {before[job_id]['status']} job"
            check_invariants(after)


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written under the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(submits, min_size=1, max_size=6),  # a queue to start from
    ops=st.lists(operations, min_size=10, max_size=40),
)
def test_random_operations_keep_the_lifecycle_invariants(
    database_url: str, first: list[tuple], ops: list[tuple]
) -> None:
    asyncio.run(scenario(database_url, expand(first + ops)))
