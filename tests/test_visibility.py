"""One visibility rule on every read path: each role drives job, jobs, queue, jobStats, User.jobs,
jobUpdated and jobEvents over the same jobs, and every path answers the same set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from domain.errors import NotFound
from domain.status import JobStatus
from models import Job, User
from service import jobs
from service.bus import EventBus, create_bus
from service.events import set_publisher
from service.live import follow_events, follow_job
from tests.conftest import Account
from tests.factories import insert_job, valid_submission
from tests.graphql_client import GraphQLClient

S = JobStatus
ROLES = ("admin", "user", "other", "worker", "worker2")
WAIT = 10.0


@dataclass(frozen=True)
class World:
    ids: dict[str, str]  # name -> job id
    expected: dict[str, set[str]]  # role -> names of the jobs it may see


@pytest.fixture
async def bus(db: str) -> AsyncIterator[EventBus]:
    live_bus = create_bus(db)
    await live_bus.start()
    previous = set_publisher(live_bus)
    yield live_bus
    set_publisher(previous)
    await live_bus.stop()


@pytest.fixture
async def world(accounts: dict[str, Account]) -> World:
    user = await User.get(id=accounts["user"].id)
    other = await User.get(id=accounts["other"].id)
    worker, worker2 = accounts["worker"].id, accounts["worker2"].id
    rows = {
        "user_queued": await insert_job(user, status=S.QUEUED, sequence=1),
        "user_rendering_w": await insert_job(
            user, status=S.RENDERING, worker_id=worker, sequence=1, lease=1, attempts=1
        ),
        "user_rendering_w2": await insert_job(
            user, status=S.RENDERING, worker_id=worker2, sequence=1, lease=1, attempts=1
        ),
        "user_pending": await insert_job(user, status=S.PENDING, sequence=1),
        "other_queued": await insert_job(other, status=S.QUEUED, sequence=1),
        "other_done_by_w": await insert_job(
            other, status=S.COMPLETED, worker_id=worker, progress=100, sequence=1
        ),
        "other_failed": await insert_job(other, status=S.FAILED, error_message="x", sequence=1),
    }
    every = set(rows)
    queued = {"user_queued", "other_queued"}
    return World(
        ids={name: job.id for name, job in rows.items()},
        expected={
            "admin": every,
            "user": {name for name in every if name.startswith("user_")},
            "other": {name for name in every if name.startswith("other_")},
            "worker": queued | {"user_rendering_w", "other_done_by_w"},
            "worker2": queued | {"user_rendering_w2"},
        },
    )


def names(world: World, ids: list[str]) -> set[str]:
    by_id = {job_id: name for name, job_id in world.ids.items()}
    return {by_id[job_id] for job_id in ids}


@pytest.mark.parametrize("role", ROLES)
async def test_every_query_path_answers_the_same_jobs(
    role: str, api: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    token = accounts[role].token
    expected = world.expected[role]

    single = set()
    for name, job_id in world.ids.items():
        response = await api("query($id: ID!) { job(id: $id) { id } }", {"id": job_id}, token)
        assert not response.errors, response.errors
        if response.data["job"] is not None:
            single.add(name)
    assert single == expected, "job(id)"

    listed = await api("{ jobs(first: 100) { totalCount edges { node { id } } } }", token=token)
    page = listed.data["jobs"]
    assert names(world, [edge["node"]["id"] for edge in page["edges"]]) == expected, "jobs"
    assert page["totalCount"] == len(expected), "jobs.totalCount"

    queue = await api("{ queue(first: 100) { id } }", token=token)
    queued = {name for name in expected if name.endswith("_queued")}
    assert names(world, [job["id"] for job in queue.data["queue"]]) == queued, "queue"

    stats = await api("{ jobStats { total queued rendering } }", token=token)
    assert stats.data["jobStats"]["total"] == len(expected), "jobStats"

    mine = await api("{ me { jobs(first: 100) { edges { node { id } } } } }", token=token)
    own = {name for name in expected if name.startswith(f"{role}_")}
    assert names(world, [e["node"]["id"] for e in mine.data["me"]["jobs"]["edges"]]) == own


@pytest.mark.parametrize("role", ROLES)
async def test_the_live_paths_answer_the_same_jobs(
    role: str, accounts: dict[str, Account], world: World, bus: EventBus
) -> None:
    actor = accounts[role].actor
    snapshots = set()
    for name, job_id in world.ids.items():
        stream = follow_job(bus, actor, job_id)
        try:
            async with asyncio.timeout(WAIT):
                await anext(stream)
            snapshots.add(name)
        except NotFound:
            pass
        finally:
            await stream.aclose()
    assert snapshots == world.expected[role], "jobUpdated"

    events = follow_events(bus, actor)
    first = asyncio.ensure_future(anext(events))  # the generator subscribes on its first step
    async with asyncio.timeout(WAIT):
        while bus.subscriber_count == 0:
            await asyncio.sleep(0.01)
    admin = accounts["admin"].actor
    changed = set()
    for name, job_id in world.ids.items():  # one change per unfinished job, made by an admin
        job = await Job.get(id=job_id)
        if job.status not in (S.COMPLETED, S.FAILED):
            await jobs.set_priority(job_id, 9, actor=admin)
            changed.add(name)
    # Markers every role sees at least one of (their own, or queued ones): events arrive in
    # commit order, so once a marker's QUEUED arrives every change above has been delivered.
    markers = {
        (await jobs.submit_job(accounts[owner].actor, valid_submission())).id
        for owner in ("user", "other")
    }
    received: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            update = await first
            while not (update.event.job_id in markers and update.event.status is S.QUEUED):
                received.append(update.event.job_id)
                update = await anext(events)
    finally:
        await events.aclose()
    seen = names(world, [job_id for job_id in received if job_id not in markers])
    assert seen == world.expected[role] & changed, "jobEvents"


async def test_a_worker_never_sees_who_submitted_a_job(
    api: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    query = "{ jobs(first: 100) { edges { node { id user { id email name } } } } }"
    as_worker = await api(query, token=accounts["worker"].token)
    assert not as_worker.errors, as_worker.errors
    owners = [edge["node"]["user"] for edge in as_worker.data["jobs"]["edges"]]
    assert owners and all(owner is None for owner in owners)
    queue = await api("{ queue { user { email } } }", token=accounts["worker"].token)
    assert all(job["user"] is None for job in queue.data["queue"])
    as_owner = await api(query, token=accounts["user"].token)
    emails = {edge["node"]["user"]["email"] for edge in as_owner.data["jobs"]["edges"]}
    assert emails == {accounts["user"].email}


async def test_a_worker_stops_receiving_a_job_that_went_to_another(
    accounts: dict[str, Account], bus: EventBus
) -> None:
    worker, worker2, admin = (accounts[r].actor for r in ("worker", "worker2", "admin"))
    await jobs.submit_job(accounts["user"].actor, valid_submission())
    job = await jobs.claim_next(worker)
    assert job is not None
    stream = follow_job(bus, worker, job.id)
    try:
        async with asyncio.timeout(WAIT):
            assert (await anext(stream)).job.status is S.RENDERING
            await jobs.requeue(job.id, actor=admin)
            back = await anext(stream)  # a QUEUED job: any worker may still see it
            assert back.event is not None and back.event.status is S.QUEUED
            assert await jobs.claim_next(worker2) is not None
            await jobs.report_progress(job.id, 50, "worker2's secret", actor=worker2)
            with pytest.raises(NotFound):
                await anext(stream)
    finally:
        await stream.aclose()
