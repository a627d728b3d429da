"""The `workers` query: what a farm operator watches. Each WORKER, the jobs it holds, its last
heartbeat and action, and whether it went silent; admins only; a fixed number of statements."""

from __future__ import annotations

from datetime import datetime

from models import Job
from service import clock, jobs, settings, sweeper, users
from testkit.sql_log import capture_sql
from tests.conftest import Account, make_account
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient

WORKERS = """
{ workers {
    worker { email isActive }
    heldJobs { id status progress queuePosition }
    lastHeartbeatAt lastSeenAt stalled
} }
"""


async def workers_view(api: GraphQLClient, token: str) -> dict[str, dict]:
    response = await api(WORKERS, {}, token)
    assert not response.errors, response.errors
    return {entry["worker"]["email"]: entry for entry in response.data["workers"]}


def moment(answer: str | None) -> datetime:
    assert answer is not None
    return datetime.fromisoformat(answer)


async def test_admins_see_each_worker_with_what_it_holds_and_when_it_was_heard_from(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    job = await jobs.submit_job(user.actor, valid_submission())
    await jobs.claim_next(worker.actor)
    clock.advance(30)
    await jobs.report_progress(job.id, 40, actor=worker.actor)
    clock.advance(30)
    await jobs.heartbeat(job.id, worker.actor)
    stored = await Job.get(id=job.id)

    view = await workers_view(api, accounts["admin"].token)

    assert set(view) == {"worker@example.com", "worker2@example.com"}
    busy, idle = view["worker@example.com"], view["worker2@example.com"]
    assert busy["heldJobs"] == [
        {"id": job.id, "status": "RENDERING", "progress": 40, "queuePosition": None}
    ]
    assert moment(busy["lastHeartbeatAt"]) == stored.heartbeat_at
    # The heartbeat came after the last recorded report: it is the latest sign of life.
    assert moment(busy["lastSeenAt"]) == stored.heartbeat_at
    assert busy["stalled"] is False
    assert idle == {
        "worker": {"email": "worker2@example.com", "isActive": True},
        "heldJobs": [],
        "lastHeartbeatAt": None,
        "lastSeenAt": None,
        "stalled": False,
    }


async def test_a_silent_worker_is_marked_stalled_until_the_sweeper_takes_its_job_back(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker, admin = accounts["user"], accounts["worker"], accounts["admin"]
    job = await jobs.submit_job(user.actor, valid_submission())
    await jobs.claim_next(worker.actor)
    claimed_at = (await Job.get(id=job.id)).started_at

    clock.advance(settings.current().stall_timeout_seconds - 1)
    assert (await workers_view(api, admin.token))["worker@example.com"]["stalled"] is False
    clock.advance(2)
    assert (await workers_view(api, admin.token))["worker@example.com"]["stalled"] is True

    assert (await sweeper.sweep_once()).requeued == 1
    after = (await workers_view(api, admin.token))["worker@example.com"]
    assert (after["heldJobs"], after["stalled"], after["lastHeartbeatAt"]) == ([], False, None)
    # The requeue is the sweeper's doing, not the worker's: it was last seen claiming.
    assert moment(after["lastSeenAt"]) == claimed_at


async def test_the_last_action_counts_for_a_worker_that_holds_nothing_now(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    job = await jobs.submit_job(user.actor, valid_submission())
    await jobs.claim_next(worker.actor)
    clock.advance(60)
    await jobs.complete(job.id, worker.actor)
    finished_at = (await Job.get(id=job.id)).completed_at

    entry = (await workers_view(api, accounts["admin"].token))["worker@example.com"]
    assert entry["heldJobs"] == [] and entry["lastHeartbeatAt"] is None
    assert moment(entry["lastSeenAt"]) == finished_at


async def test_deactivated_workers_come_after_the_active_ones(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    await users.deactivate_user(accounts["worker"].id)
    response = await api(WORKERS, {}, accounts["admin"].token)
    assert [(e["worker"]["email"], e["worker"]["isActive"]) for e in response.data["workers"]] == [
        ("worker2@example.com", True),
        ("worker@example.com", False),
    ]


async def test_only_admins_see_the_workers(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    for role in ("user", "worker"):
        response = await api(WORKERS, {}, accounts[role].token)
        assert response.data is None
        assert [error["extensions"]["code"] for error in response.errors] == ["FORBIDDEN"]
    response = await api(WORKERS, {}, None)
    assert [error["extensions"]["code"] for error in response.errors] == ["UNAUTHENTICATED"]


async def test_the_view_costs_the_same_statements_for_two_workers_or_twelve(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, admin = accounts["user"], accounts["admin"]

    async def statements_of_the_view() -> int:
        with capture_sql() as statements:
            await workers_view(api, admin.token)
        return len(statements)

    few = await statements_of_the_view()
    for index in range(10):
        worker = await make_account(f"node{index}@example.com", "worker")
        await jobs.submit_job(user.actor, valid_submission(project_name=f"Shot {index}"))
        await jobs.claim_next(worker.actor)
        clock.advance(1)
    assert await statements_of_the_view() == few
