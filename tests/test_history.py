"""A job's history: every change recorded with the change, read back as Job.events, pruned after
the retention, and the order of positions that every replay relies on. Runs on the backend of
the session."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from domain.events import Duty, JobEventKind
from domain.policy import Actor
from domain.status import JobStatus
from domain.validation import JobSubmission
from models import Job, JobEventRecord
from service import clock, event_store, jobs, settings, sweeper
from tests.conftest import Account
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient

K = JobEventKind
S = JobStatus

HISTORY = """
query($id: ID!, $first: Int, $after: String) {
  job(id: $id) {
    events(first: $first, after: $after) {
      edges {
        cursor
        node {
          kind sequence previousStatus reason duty cursor
          actor { email } worker { email }
          job { status progress logs cancelledReason completedAt attempts worker { email } }
        }
      }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""


def submission(name: str = "promo") -> JobSubmission:
    return valid_submission(project_name=f"Project {name}")


async def history(api: GraphQLClient, token: str, job_id: str, **variables: object) -> dict:
    response = await api(HISTORY, {"id": job_id, "first": 10, **variables}, token)
    assert not response.errors, response.errors
    return response.data["job"]


async def test_a_jobs_history_tells_who_did_what_and_shows_the_job_as_each_change_left_it(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker, admin = accounts["user"], accounts["worker"], accounts["admin"]
    job = await jobs.submit_job(user.actor, submission())
    await jobs.claim_next(worker.actor)
    await jobs.report_progress(job.id, 40, "frame 40", actor=worker.actor)
    await jobs.cancel(job.id, "client changed the brief", actor=admin.actor)

    edges = (await history(api, user.token, job.id))["events"]["edges"]
    assert all(edge["cursor"] == edge["node"]["cursor"] for edge in edges)
    events = [edge["node"] for edge in edges]
    assert [(e["kind"], e["sequence"], e["job"]["status"]) for e in events] == [
        ("CREATED", 1, "PENDING"),
        ("STATUS_CHANGED", 2, "VALIDATING"),
        ("STATUS_CHANGED", 3, "QUEUED"),
        ("STATUS_CHANGED", 4, "RENDERING"),
        ("PROGRESS", 5, "RENDERING"),
        ("STATUS_CHANGED", 6, "CANCELLED"),
    ]
    created, _, queued, claimed, progressed, cancelled = events
    assert created["actor"] == {"email": user.email} and created["duty"] is None
    assert claimed["actor"] == {"email": worker.email} and claimed["previousStatus"] == "QUEUED"
    assert cancelled["actor"] == {"email": admin.email}
    assert cancelled["reason"] == "client changed the brief"
    # Each job is the job right after its change, not the job as it is now.
    assert queued["job"]["worker"] is None and queued["job"]["attempts"] == 0
    assert claimed["job"]["worker"] == {"email": worker.email} and claimed["job"]["attempts"] == 1
    assert claimed["job"]["logs"] is None
    assert progressed["job"]["progress"] == 40 and "frame 40" in progressed["job"]["logs"]
    assert progressed["job"]["cancelledReason"] is None
    assert progressed["job"]["completedAt"] is None
    assert cancelled["job"]["cancelledReason"] == "client changed the brief"
    assert cancelled["job"]["completedAt"] is not None

    # The worker that rendered it sees the history of its job, but not who submitted it.
    seen_by_worker = (await history(api, worker.token, job.id))["events"]["edges"]
    assert seen_by_worker[0]["node"]["actor"] is None
    assert seen_by_worker[3]["node"]["actor"] == {"email": worker.email}
    # Another user does not see the job at all.
    refused = await api(HISTORY, {"id": job.id, "first": 10}, accounts["other"].token)
    assert not refused.errors and refused.data["job"] is None


async def test_a_history_pages_forward_from_a_cursor(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user = accounts["user"]
    job = await jobs.submit_job(user.actor, submission())
    for priority in (6, 7, 8, 9):
        await jobs.set_priority(job.id, priority, actor=user.actor)

    first = (await history(api, user.token, job.id, first=3))["events"]
    assert [edge["node"]["sequence"] for edge in first["edges"]] == [1, 2, 3]
    assert first["pageInfo"]["hasNextPage"] and not first["pageInfo"]["hasPreviousPage"]
    rest = await history(api, user.token, job.id, first=10, after=first["pageInfo"]["endCursor"])
    assert [edge["node"]["sequence"] for edge in rest["events"]["edges"]] == [4, 5, 6, 7]
    assert not rest["events"]["pageInfo"]["hasNextPage"]
    assert rest["events"]["pageInfo"]["hasPreviousPage"]

    light = """query($id: ID!, $first: Int, $after: String) {
        job(id: $id) { events(first: $first, after: $after) { edges { cursor } } } }"""
    for variables, field in (({"first": -1}, "first"), ({"after": "not-a-cursor"}, "after")):
        response = await api(light, {"id": job.id, **variables}, user.token)
        assert response.codes == ["BAD_USER_INPUT"], response.errors
        assert response.errors[0]["extensions"]["fields"][0]["field"] == field


async def test_the_histories_of_a_page_of_jobs_take_one_statement(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    from testkit.sql_log import capture_sql

    user = accounts["user"]
    for index in range(15):
        await jobs.submit_job(user.actor, submission(f"job{index}"))
    query = (
        "{ jobs(first: 15) { edges { node { id events(first: 2) { edges { node { kind } } } } } } }"
    )
    with capture_sql() as statements:
        response = await api(query, {}, user.token)
    assert not response.errors, response.errors
    assert all(len(edge["node"]["events"]["edges"]) == 2 for edge in response.data["jobs"]["edges"])
    history_reads = [sql.one_line for sql in statements if "job_events" in sql.text]
    assert len(history_reads) == 1, history_reads


async def test_a_stalled_job_is_recorded_as_the_sweepers_doing_naming_the_worker(
    owner: Actor, worker: Actor
) -> None:
    job = await jobs.submit_job(owner, submission())
    await jobs.claim_next(worker)
    clock.advance(settings.current().stall_timeout_seconds + 1)
    assert (await sweeper.sweep_once()).requeued == 1

    recorded = await event_store.job_events(job.id, 0)
    requeued = recorded[-1]
    assert (requeued.status, requeued.previous_status) == (S.QUEUED, S.RENDERING)
    assert requeued.actor_id is None and requeued.duty is Duty.STALL_RECOVERY
    assert requeued.worker_id == worker.id  # the worker it released
    assert requeued.reason is not None and worker.id in requeued.reason
    assert requeued.state["worker_id"] is None


async def test_every_change_is_recorded_once_with_sequences_without_gaps_under_races(
    owner: Actor, worker: Actor, admin: Actor
) -> None:
    job = await jobs.submit_job(owner, submission())
    await jobs.claim_next(worker)

    async def report(progress: int) -> None:
        await jobs.report_progress(job.id, progress, f"line {progress}", actor=worker)

    async def log(index: int) -> None:
        await jobs.append_log(job.id, [f"admin note {index}"], actor=admin)

    await asyncio.gather(*(report(p) for p in range(1, 40)), *(log(i) for i in range(20)))
    stored = await Job.get(id=job.id)
    recorded = await event_store.job_events(job.id, 0, 1000)
    assert [event.sequence for event in recorded] == list(range(1, stored.sequence + 1))
    positions = [event.position for event in recorded]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_a_tail_reader_misses_no_event_while_many_writers_commit(
    owner: Actor, worker: Actor, admin: Actor
) -> None:
    """What every live view relies on: reading `events_after(last)` again and again while
    writers commit concurrently ends with every event, because positions follow commit order."""
    targets = [await jobs.submit_job(owner, submission(f"job{n}")) for n in range(6)]
    start = await event_store.latest_position()
    done = asyncio.Event()

    async def write(job: Job) -> None:
        for index in range(25):
            await jobs.append_log(job.id, [f"note {index}"], actor=admin)

    seen: list[int] = []

    async def tail() -> None:
        last = start
        while True:
            finished = done.is_set()
            for event in await event_store.events_after(last, 50):
                seen.append(event.position or 0)
                last = event.position or 0
            if finished:
                return
            await asyncio.sleep(0)

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(write(job) for job in targets))
    done.set()
    await reader
    stored = await JobEventRecord.filter(id__gt=start).order_by("id").values_list("id", flat=True)
    assert seen == list(stored)
    assert len(seen) == 6 * 25


async def test_old_events_of_finished_jobs_are_pruned_and_the_jobs_stay(
    owner: Actor, worker: Actor
) -> None:
    finished = await jobs.submit_job(owner, submission("finished"))
    running = await jobs.submit_job(owner, submission("running"))
    await jobs.cancel(finished.id, "not needed", actor=owner)
    await jobs.claim_next(worker)
    clock.advance(timedelta(days=91).total_seconds())
    await jobs.heartbeat(running.id, actor=worker)  # the running job is not stalled

    report = await sweeper.sweep_once(recover_stalled=False)
    assert report.pruned == 4  # CREATED, VALIDATING, QUEUED, CANCELLED of the finished job
    assert await event_store.job_events(finished.id, 0) == []
    assert await Job.exists(id=finished.id)
    assert [e.sequence for e in await event_store.job_events(running.id, 0)] == [1, 2, 3, 4]

    # A recent change is kept, whatever the job's status.
    await jobs.retry(finished.id, actor=owner)
    await jobs.cancel(finished.id, "still not needed", actor=owner)
    assert (await sweeper.sweep_once(recover_stalled=False)).pruned == 0
    assert len(await event_store.job_events(finished.id, 0)) == 4


async def test_a_retention_of_zero_keeps_every_event(owner: Actor) -> None:
    job = await jobs.submit_job(owner, submission())
    await jobs.cancel(job.id, "not needed", actor=owner)
    clock.advance(timedelta(days=10_000).total_seconds())
    previous = settings.configure(settings.ServiceSettings(event_retention_days=0))
    try:
        assert (await sweeper.sweep_once(recover_stalled=False)).pruned == 0
    finally:
        settings.configure(previous)
    assert len(await event_store.job_events(job.id, 0)) == 4


def test_the_retention_comes_from_the_environment() -> None:
    from app.settings import Settings

    assert Settings.from_env({}).event_retention_days == 90
    assert Settings.from_env({"RENDERTRACK_EVENT_RETENTION_DAYS": "0"}).event_retention_days == 0
    with pytest.raises(ValueError, match="RENDERTRACK_EVENT_RETENTION_DAYS must be a number"):
        Settings.from_env({"RENDERTRACK_EVENT_RETENTION_DAYS": "-3"})


async def test_a_change_may_write_only_what_its_event_records(owner: Actor) -> None:
    from tortoise.transactions import in_transaction

    from service import job_store

    job = await jobs.submit_job(owner, submission())
    with pytest.raises(ValueError, match="project_name"):
        async with in_transaction() as connection:
            await job_store.compare_and_set(connection, job, {"project_name": "x"}, clock.now())
    assert (await Job.get(id=job.id)).project_name == "Project promo"


async def test_a_worker_reading_a_queued_jobs_history_does_not_learn_other_workers(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, first, second = accounts["user"], accounts["worker"], accounts["worker2"]
    job = await jobs.submit_job(user.actor, submission())
    await jobs.claim_next(second.actor)
    await jobs.report_progress(job.id, 30, actor=second.actor)
    await jobs.requeue(job.id, actor=second.actor)  # QUEUED: any worker may see it now
    query = """query($id: ID!) { job(id: $id) { events(first: 10) { edges { node {
        sequence worker { email } job { worker { email } } } } } } }"""

    def holders(response: object) -> list[tuple]:
        edges = response.data["job"]["events"]["edges"]  # type: ignore[attr-defined]
        return [(e["node"]["worker"], e["node"]["job"]["worker"]) for e in edges[3:]]

    seen_by_other_worker = await api(query, {"id": job.id}, first.token)
    assert holders(seen_by_other_worker) == [(None, None)] * 3
    shown = {"email": second.email}
    assert holders(await api(query, {"id": job.id}, user.token)) == [
        (shown, shown),
        (shown, shown),
        (shown, None),  # the requeue names the worker it released; the job holds none
    ]


async def test_histories_of_more_jobs_than_one_statement_may_name(owner: Actor) -> None:
    job = await jobs.submit_job(owner, submission())
    wanted = [(job.id, after) for after in range(600)]  # SQLite: 500 terms per compound SELECT
    found = await event_store.histories(wanted, 1)
    assert [event.sequence for event in found[(job.id, 0)]] == [1]
    assert [event.sequence for event in found[(job.id, 2)]] == [3]
    assert found[(job.id, 599)] == []


async def test_a_jobs_history_never_runs_backwards_in_time(owner: Actor, worker: Actor) -> None:
    job = await jobs.submit_job(owner, submission())
    clock.advance(5)
    await jobs.claim_next(worker)
    recorded = await event_store.job_events(job.id, 0)
    times = [event.updated_at for event in recorded]
    assert times == sorted(times) and times[0] == times[2] < times[3]


async def test_a_jobs_sequence_names_the_change_it_shows(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    job = await jobs.submit_job(user.actor, submission())
    await jobs.claim_next(worker.actor)
    await jobs.report_progress(job.id, 30, actor=worker.actor)
    query = (
        "query($id: ID!) { job(id: $id) { sequence progress "
        "events(first: 50) { edges { node { sequence job { sequence progress } } } } } }"
    )
    answer = await api(query, {"id": job.id}, user.token)
    assert not answer.errors, answer.errors
    shown = answer.data["job"]
    recorded = await event_store.job_events(job.id, 0)
    # The job now is its last change; each event's job is the change that event made.
    assert shown["sequence"] == recorded[-1].sequence == (await Job.get(id=job.id)).sequence
    assert [edge["node"]["job"]["sequence"] for edge in shown["events"]["edges"]] == [
        event.sequence for event in recorded
    ]
    assert shown["events"]["edges"][-1]["node"]["job"]["progress"] == shown["progress"] == 30
