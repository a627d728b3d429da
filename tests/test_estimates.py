"""Estimates from the farm's own history and places in the queue: the pure rules of
domain/estimates.py, the estimatedTime a job is given when it is queued, estimatedCompletionAt,
estimatedStartAt and queuePosition as clients read them, and what reading them costs in SQL.

Statements are counted through the "tortoise.db_client" logger while one HTTP request runs
through the in-process app (as tests/test_fanout_cost.py does).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.factory import create_app
from app.settings import Settings
from domain import estimates
from domain.policy import Actor
from domain.status import JobStatus
from models import Job, User
from service import clock, jobs, settings
from service.users import actor_of
from testkit.sql_log import SqlLog, sql_log
from tests.conftest import Account
from tests.factories import VALID_JOB_FIELDS, insert_job, valid_submission
from tests.graphql_client import GraphQLClient
from tests.operations import CLAIM, VALID_INPUT, mutate, submit

S = JobStatus
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TEMPLATE = VALID_JOB_FIELDS["template_path"]
PROJECT = VALID_JOB_FIELDS["project_name"]


def close_to(answer: str | None, expected: datetime, seconds: float = 3.0) -> bool:
    assert answer is not None, f"null, expected about {expected.isoformat()}"
    return abs((datetime.fromisoformat(answer) - expected).total_seconds()) <= seconds


# --- the pure rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], None),
        ([42], 42),
        ([300, 100, 200], 200),
        ([10, 20, 30, 1000], 25),  # even count: the mean of the middle two
        ([5, 5, 5, 10_000], 5),  # the median, not the mean: one stuck render does not count
    ],
)
def test_estimated_seconds_is_the_median(samples: list[int], expected: int | None) -> None:
    assert estimates.estimated_seconds(samples) == expected


def test_completion_from_the_rate_of_progress() -> None:
    # 25 % in 100 s: 300 s to go.
    at = estimates.estimated_completion_at(
        started_at=T0, progress=25, estimated_time=9999, now=T0 + timedelta(seconds=100)
    )
    assert at == T0 + timedelta(seconds=400)
    # 80 % in 400 s: 100 s to go, whatever the estimate said.
    at = estimates.estimated_completion_at(
        started_at=T0, progress=80, estimated_time=10, now=T0 + timedelta(seconds=400)
    )
    assert at == T0 + timedelta(seconds=500)
    # A start in the future (clock skew between servers) counts as no time spent.
    now = T0 - timedelta(seconds=5)
    assert estimates.estimated_completion_at(
        started_at=T0, progress=50, estimated_time=None, now=now
    ) == (now)


def test_completion_before_the_first_report_comes_from_the_estimate() -> None:
    now = T0 + timedelta(seconds=100)
    assert estimates.estimated_completion_at(
        started_at=T0, progress=0, estimated_time=600, now=now
    ) == T0 + timedelta(seconds=600)
    # Past the estimate and still no report: "now", never a time in the past.
    late = T0 + timedelta(seconds=900)
    assert (
        estimates.estimated_completion_at(started_at=T0, progress=0, estimated_time=600, now=late)
        == late
    )


def test_completion_is_unknown_without_a_start_or_any_measure() -> None:
    now = T0 + timedelta(seconds=100)
    assert (
        estimates.estimated_completion_at(started_at=None, progress=50, estimated_time=60, now=now)
        is None
    )
    assert (
        estimates.estimated_completion_at(started_at=T0, progress=0, estimated_time=None, now=now)
        is None
    )


def test_start_from_the_position_and_the_recent_throughput() -> None:
    # 6 jobs finished in the last hour: one every 10 minutes.
    for position in (1, 2, 5):
        assert estimates.estimated_start_at(
            queue_position=position, finished_recently=6, now=T0
        ) == T0 + timedelta(minutes=10 * position)
    assert estimates.estimated_start_at(
        queue_position=3, finished_recently=3600, now=T0
    ) == T0 + timedelta(seconds=3)


def test_start_is_unknown_without_recent_history() -> None:
    assert estimates.estimated_start_at(queue_position=1, finished_recently=0, now=T0) is None


# --- estimatedTime at submission -------------------------------------------------------------


async def history(
    owner: User, times: list[int], *, ago: timedelta = timedelta(minutes=5), **fields: Any
) -> None:
    """COMPLETED jobs with these actual times, finished `ago` (one second apart, in order)."""
    now = datetime.now(UTC)
    for index, seconds in enumerate(times):
        completed_at = now - ago - timedelta(seconds=index)
        await insert_job(
            owner,
            status=S.COMPLETED,
            progress=100,
            actual_time=seconds,
            started_at=completed_at - timedelta(seconds=seconds),
            completed_at=completed_at,
            **fields,
        )


async def estimate_on_submit(owner: User, **fields: Any) -> int | None:
    job = await jobs.submit_job(actor_of(owner), valid_submission(**fields))
    stored = await Job.get(id=job.id)
    assert stored.status is S.QUEUED
    assert job.estimated_time == stored.estimated_time
    return stored.estimated_time


async def test_the_estimate_is_the_median_of_completed_jobs_of_the_same_template(
    user: User,
) -> None:
    await history(user, [100, 300, 200, 1000, 250])
    # Not counted: other templates (even of the same project), jobs that did not complete.
    await history(user, [5, 5, 5, 5, 5, 5], template_path="C:\\jobs\\other.aep")
    for status in (S.FAILED, S.CANCELLED):
        await insert_job(user, status=status, actual_time=7, completed_at=datetime.now(UTC))
    await insert_job(user, status=S.RENDERING, started_at=datetime.now(UTC))
    assert await estimate_on_submit(user) == 250


async def test_only_the_latest_twenty_completions_count(user: User) -> None:
    await history(user, [100] * 10 + [200] * 10)
    # Older completions, written after the recent ones: the order is by completion time.
    await history(user, [10_000] * 21, ago=timedelta(days=2))
    assert await estimate_on_submit(user) == 150


async def test_a_template_without_history_falls_back_to_the_project(user: User) -> None:
    await history(user, [60, 80, 100], template_path="C:\\jobs\\older_cut.aep")
    await history(user, [1, 1, 1, 1, 1], project_name="Another Project")
    assert await estimate_on_submit(user, template_path="C:\\jobs\\brand_new.aep") == 80


async def test_templates_sharing_a_long_prefix_are_different_templates(user: User) -> None:
    prefix = "C:\\jobs\\" + "deep\\" * 50
    assert len(prefix) > 200
    await history(user, [30, 30, 30], template_path=prefix + "a.aep", project_name="P1")
    assert await estimate_on_submit(user, template_path=prefix + "a.aep", project_name="P2") == 30
    assert await estimate_on_submit(user, template_path=prefix + "b.aep", project_name="P2") is None


async def test_no_estimate_without_history_of_the_template_or_the_project(user: User) -> None:
    await history(user, [60, 80], template_path="C:\\jobs\\x.aep", project_name="Elsewhere")
    assert await estimate_on_submit(user) is None


async def test_a_retry_computes_the_estimate_again(user: User, worker: Actor) -> None:
    owner = actor_of(user)
    job = await jobs.submit_job(owner, valid_submission())
    assert job.estimated_time is None
    assert (await jobs.claim_next(worker)).id == job.id
    await jobs.fail(job.id, "aerender crashed", actor=worker)
    # The farm rendered this template meanwhile.
    await history(user, [400, 600, 500])
    retried = await jobs.retry(job.id, actor=owner)
    stored = await Job.get(id=job.id)
    assert retried.status is S.QUEUED is stored.status
    assert stored.estimated_time == 500


async def test_estimated_time_is_answered_on_submit(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    owner = await User.get(id=accounts["user"].id)
    await history(owner, [90, 110, 100], template_path=VALID_INPUT["templatePath"])
    response = await api(
        "mutation($input: SubmitJobInput!) { submitJob(input: $input) { estimatedTime } }",
        {"input": VALID_INPUT},
        accounts["user"].token,
    )
    assert not response.errors, response.errors
    assert response.data["submitJob"]["estimatedTime"] == 100


# --- estimatedCompletionAt and estimatedStartAt ----------------------------------------------

ESTIMATES = """
query($id: ID!) { job(id: $id) { status startedAt estimatedCompletionAt estimatedStartAt } }
"""


async def estimates_of(api: GraphQLClient, token: str, job_id: str) -> dict[str, Any]:
    response = await api(ESTIMATES, {"id": job_id}, token)
    assert not response.errors, response.errors
    return response.data["job"]


async def test_completion_of_a_rendering_job_from_its_rate_of_progress(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker = accounts["user"].token, accounts["worker"].token
    job_id = await submit(api, user)
    assert (await mutate(api, worker, CLAIM))["claimJob"]["id"] == job_id
    await mutate(
        api,
        worker,
        "mutation($id: ID!) { reportProgress(id: $id, progress: 25) { id } }",
        id=job_id,
    )
    started = datetime.now(UTC) - timedelta(seconds=400)
    await Job.filter(id=job_id).update(started_at=started)

    answer = await estimates_of(api, user, job_id)
    assert answer["status"] == "RENDERING"
    assert datetime.fromisoformat(answer["startedAt"]) == started
    # 25 % in 400 s: the whole render takes 1600 s.
    assert close_to(answer["estimatedCompletionAt"], started + timedelta(seconds=1600))
    assert answer["estimatedStartAt"] is None


async def test_completion_before_the_first_report_is_the_start_plus_the_estimate(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user = accounts["user"].token
    job_id = await submit(api, user)
    assert (await mutate(api, accounts["worker"].token, CLAIM))["claimJob"]["id"] == job_id
    started = datetime.now(UTC) - timedelta(seconds=100)
    await Job.filter(id=job_id).update(started_at=started, estimated_time=900)
    answer = await estimates_of(api, user, job_id)
    assert close_to(answer["estimatedCompletionAt"], started + timedelta(seconds=900))


async def test_completion_is_null_unless_rendering(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    owner = await User.get(id=accounts["user"].id)
    started = datetime.now(UTC) - timedelta(seconds=100)
    for status in (S.PENDING, S.QUEUED, S.COMPLETED, S.FAILED, S.CANCELLED):
        job = await insert_job(
            owner, status=status, progress=50, started_at=started, estimated_time=300
        )
        answer = await estimates_of(api, accounts["user"].token, job.id)
        assert answer["status"] == status.value
        assert answer["estimatedCompletionAt"] is None, status


QUEUE_ESTIMATES = "{ queue(first: 100) { id queuePosition estimatedStartAt } }"


async def test_start_is_null_without_completions_in_the_last_hour(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    owner = await User.get(id=accounts["user"].id)
    await history(owner, [60, 60], ago=timedelta(hours=2))  # too long ago
    await insert_job(owner, status=S.FAILED, completed_at=datetime.now(UTC))  # not completed
    await submit(api, accounts["user"].token)
    response = await api(QUEUE_ESTIMATES, token=accounts["admin"].token)
    assert not response.errors, response.errors
    assert [job["estimatedStartAt"] for job in response.data["queue"]] == [None]


async def test_start_grows_with_the_position_at_the_recent_throughput(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    owner = await User.get(id=accounts["user"].id)
    await history(owner, [60, 60, 60, 60], ago=timedelta(minutes=10))  # K = 4: one per 900 s
    await history(owner, [60] * 3, ago=timedelta(hours=3))  # outside the window
    await insert_job(owner, status=S.FAILED, completed_at=datetime.now(UTC))
    ids = [await submit(api, accounts["user"].token, priority=p) for p in (3, 9, 5)]
    rendering = await submit(api, accounts["user"].token, priority=10)
    assert (await mutate(api, accounts["worker"].token, CLAIM))["claimJob"]["id"] == rendering

    response = await api(QUEUE_ESTIMATES, token=accounts["admin"].token)
    assert not response.errors, response.errors
    now = datetime.now(UTC)
    queue = response.data["queue"]
    assert [job["id"] for job in queue] == [ids[1], ids[2], ids[0]]
    for job in queue:
        position = job["queuePosition"]
        assert close_to(job["estimatedStartAt"], now + timedelta(seconds=900 * position)), job
    assert (await estimates_of(api, accounts["user"].token, rendering))["estimatedStartAt"] is None


async def test_a_job_in_backoff_is_not_estimated_to_start_before_its_backoff_ends(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    owner = await User.get(id=accounts["user"].id)
    await history(owner, [60] * 60)  # a busy farm: one job a minute
    job_id = await submit(api, accounts["user"].token)
    assert (await mutate(api, accounts["worker"].token, CLAIM))["claimJob"]["id"] == job_id
    previous = settings.configure(
        dataclasses.replace(settings.current(), retry_backoff_seconds=1800)
    )
    try:
        await mutate(
            api,
            accounts["worker"].token,
            'mutation($id: ID!) { failJob(id: $id, error: "flaky", retryable: true) { id } }',
            id=job_id,
        )
    finally:
        settings.configure(previous)
    response = await api(
        "query($id: ID!) { job(id: $id) { status notBefore estimatedStartAt } }",
        {"id": job_id},
        accounts["user"].token,
    )
    job = response.data["job"]
    assert job["status"] == "QUEUED" and job["notBefore"] is not None
    assert job["estimatedStartAt"] is not None
    assert datetime.fromisoformat(job["estimatedStartAt"]) >= datetime.fromisoformat(
        job["notBefore"]
    ), job


async def test_position_one_is_the_job_the_next_claim_hands_out(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    waiting = await submit(api, accounts["user"].token)
    assert (await mutate(api, accounts["worker"].token, CLAIM))["claimJob"]["id"] == waiting
    await mutate(
        api,
        accounts["worker"].token,
        'mutation($id: ID!) { failJob(id: $id, error: "flaky", retryable: true) { id } }',
        id=waiting,
    )
    ready = await submit(api, accounts["user"].token)
    response = await api("{ queue { id queuePosition } }", token=accounts["admin"].token)
    first = [job["id"] for job in response.data["queue"] if job["queuePosition"] == 1]
    claimed = (await mutate(api, accounts["worker"].token, CLAIM))["claimJob"]["id"]
    assert claimed == ready
    assert first == [claimed], response.data["queue"]


# --- queuePosition and what it costs ---------------------------------------------------------


@pytest.fixture
def statements() -> Iterator[SqlLog]:
    with sql_log(recording=False, propagate=False) as log:
        yield log


async def queued_rows(owner: User, count: int, rng: random.Random) -> list[Job]:
    """QUEUED rows with mixed priorities; queue times tie in threes (the id decides then)."""
    base = datetime.now(UTC) - timedelta(hours=1)
    return [
        await insert_job(
            owner,
            status=S.QUEUED,
            priority=rng.choice([1, 3, 5, 5, 7, 10]),
            queued_at=base + timedelta(seconds=index // 3),
        )
        for index in range(count)
    ]


async def claim_order() -> list[str]:
    """The ids of QUEUED jobs in the order the claim hands them out (read, not claimed)."""
    rows = (
        await Job.filter(status=S.QUEUED)
        .order_by("-priority", "queued_at", "id")
        .values_list("id", flat=True)
    )
    return list(rows)


async def timed_query(
    api: GraphQLClient, statements: SqlLog, query: str, token: str
) -> tuple[Any, list[str]]:
    with statements.window() as seen:
        response = await api(query, token=token)
    assert not response.errors, response.errors
    return response.data, [statement.one_line for statement in seen]


QUEUE_POSITIONS = "{ queue(first: 100) { id queuePosition } }"


async def test_queue_positions_follow_the_claim_order_at_a_constant_cost(
    api: GraphQLClient, accounts: dict[str, Account], statements: SqlLog
) -> None:
    owner = await User.get(id=accounts["user"].id)
    admin = accounts["admin"].token
    rng = random.Random(20261128)
    await queued_rows(owner, 5, rng)
    few, with_five = await timed_query(api, statements, QUEUE_POSITIONS, admin)
    assert [job["queuePosition"] for job in few["queue"]] == [1, 2, 3, 4, 5]
    assert with_five, "no statement was logged: is the tortoise.db_client logger still used?"

    await queued_rows(owner, 95, rng)
    many, with_hundred = await timed_query(api, statements, QUEUE_POSITIONS, admin)
    assert len(with_hundred) == len(with_five), (with_five, with_hundred)

    answered = [(job["id"], job["queuePosition"]) for job in many["queue"]]
    assert [position for _, position in answered] == list(range(1, 101))
    assert [job_id for job_id, _ in answered] == await claim_order()

    # The workers take them in exactly that order.
    worker = accounts["worker"].actor
    claimed = [(await jobs.claim_next(worker)).id for _ in range(100)]
    assert claimed == [job_id for job_id, _ in answered]
    assert await jobs.claim_next(worker) is None


async def test_a_user_sees_its_own_jobs_at_their_places_in_the_whole_queue(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    mine = [await submit(api, accounts["user"].token, priority=p) for p in (5, 2)]
    theirs = [await submit(api, accounts["other"].token, priority=p) for p in (9, 5, 1)]
    response = await api(QUEUE_POSITIONS, token=accounts["user"].token)
    assert not response.errors, response.errors
    # Whole queue: theirs[0] (9), mine[0] (5, older), theirs[1] (5), mine[1] (2), theirs[2].
    assert response.data["queue"] == [
        {"id": mine[0], "queuePosition": 2},
        {"id": mine[1], "queuePosition": 4},
    ]
    assert theirs


JOB_PAGE = "{ jobs(first: 50) { edges { node { id status queuePosition } } } }"
OTHER_STATUSES = (S.PENDING, S.RENDERING, S.COMPLETED, S.FAILED, S.CANCELLED)


async def mixed_jobs(owner: User, queued: int, others: int, rng: random.Random) -> None:
    await queued_rows(owner, queued, rng)
    for index in range(others):
        status = OTHER_STATUSES[index % len(OTHER_STATUSES)]
        await insert_job(owner, status=status, priority=rng.choice([1, 5, 10]))


async def test_positions_on_a_page_of_mixed_jobs_at_a_constant_cost(
    api: GraphQLClient, accounts: dict[str, Account], statements: SqlLog
) -> None:
    owner = await User.get(id=accounts["user"].id)
    admin = accounts["admin"].token
    rng = random.Random(7)
    await mixed_jobs(owner, 3, 2, rng)
    few, with_five = await timed_query(api, statements, JOB_PAGE, admin)
    assert len(few["jobs"]["edges"]) == 5

    await mixed_jobs(owner, 27, 18, rng)
    many, with_fifty = await timed_query(api, statements, JOB_PAGE, admin)
    assert len(with_fifty) == len(with_five), (with_five, with_fifty)

    places = {job_id: index + 1 for index, job_id in enumerate(await claim_order())}
    nodes = [edge["node"] for edge in many["jobs"]["edges"]]
    assert len(nodes) == 50 and len(places) == 30
    for node in nodes:
        expected = places.get(node["id"])
        assert node["queuePosition"] == expected, node
        assert (expected is None) == (node["status"] != "QUEUED"), node


async def test_start_estimates_of_the_whole_queue_cost_the_same_for_5_and_100_jobs(
    api: GraphQLClient, accounts: dict[str, Account], statements: SqlLog
) -> None:
    owner = await User.get(id=accounts["user"].id)
    admin = accounts["admin"].token
    await history(owner, [60] * 10)
    rng = random.Random(3)
    await queued_rows(owner, 5, rng)
    few, with_five = await timed_query(api, statements, QUEUE_ESTIMATES, admin)
    await queued_rows(owner, 95, rng)
    many, with_hundred = await timed_query(api, statements, QUEUE_ESTIMATES, admin)
    assert len(with_hundred) == len(with_five), (with_five, with_hundred)
    assert all(job["estimatedStartAt"] for job in few["queue"] + many["queue"])
    now = datetime.now(UTC)
    last = many["queue"][-1]
    assert last["queuePosition"] == 100
    assert close_to(last["estimatedStartAt"], now + timedelta(seconds=360 * 100))


async def test_estimates_move_with_the_service_clock(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    """estimatedCompletionAt goes by the service's clock (the one the timed duties use)."""
    user = accounts["user"].token
    job_id = await submit(api, user)
    assert (await mutate(api, accounts["worker"].token, CLAIM))["claimJob"]["id"] == job_id
    await mutate(
        api,
        accounts["worker"].token,
        "mutation($id: ID!) { reportProgress(id: $id, progress: 50) { id } }",
        id=job_id,
    )
    started = datetime.now(UTC) - timedelta(seconds=100)
    await Job.filter(id=job_id).update(started_at=started)
    try:
        clock.advance(100)  # 50 % after 200 s: done at started + 400 s
        answer = await estimates_of(api, user, job_id)
    finally:
        clock.reset()
    assert close_to(answer["estimatedCompletionAt"], started + timedelta(seconds=400))


EVERY_LAZY_FIELD = """
{ jobs(first: 50) { edges { node {
  id status queuePosition estimatedStartAt estimatedCompletionAt nexrenderConfig logs(tail: 2)
  worker { id } user { id }
} } } }
"""


@pytest.fixture
async def roomy_api(db: str) -> AsyncIterator[GraphQLClient]:
    """The app with a query budget that lets a page of 50 render specs through."""
    app = create_app(Settings(database_url=db, max_query_cost=100_000), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as http:
        yield GraphQLClient(http)


async def test_every_lazily_read_field_of_a_page_costs_the_same_for_5_and_50_jobs(
    roomy_api: GraphQLClient, accounts: dict[str, Account], statements: SqlLog
) -> None:
    api = roomy_api
    owner = await User.get(id=accounts["user"].id)
    worker = await User.get(id=accounts["worker"].id)
    admin = accounts["admin"].token
    await history(owner, [60] * 2)

    async def add(count: int) -> None:
        for index in range(count):
            job = await insert_job(
                owner,
                status=(S.QUEUED, S.RENDERING)[index % 2],
                nexrender_config={"template": {"src": f"file:///t/{index}.aep"}},
            )
            if job.status is S.RENDERING:
                await Job.filter(id=job.id).update(
                    worker_id=worker.id, started_at=datetime.now(UTC), progress=10
                )
            await jobs.append_log(job.id, [f"{job.id} a", f"{job.id} b", f"{job.id} c"])

    await add(3)  # plus the 2 COMPLETED of the history: 5 jobs
    _, with_five = await timed_query(api, statements, EVERY_LAZY_FIELD, admin)
    await add(45)
    many, with_fifty = await timed_query(api, statements, EVERY_LAZY_FIELD, admin)
    assert len(with_fifty) == len(with_five), (with_five, with_fifty)

    nodes = [edge["node"] for edge in many["jobs"]["edges"]]
    assert len(nodes) == 50
    statuses = [node["status"] for node in nodes]
    assert statuses.count("QUEUED") == 25 and statuses.count("RENDERING") == 23
    for node in nodes:
        queued, rendering = node["status"] == "QUEUED", node["status"] == "RENDERING"
        assert (node["queuePosition"] is not None) == queued, node
        assert (node["estimatedStartAt"] is not None) == queued, node
        assert (node["estimatedCompletionAt"] is not None) == rendering, node
        assert (node["worker"] == {"id": worker.id}) == rendering, node
    assert sorted(node["queuePosition"] for node in nodes if node["queuePosition"]) == list(
        range(1, 26)
    )
    with_logs = [node for node in nodes if node["logs"] is not None]
    assert len(with_logs) == 48
    for node in with_logs:
        assert texts_of_tail(node["logs"]) == [f"{node['id']} b", f"{node['id']} c"]
        assert node["nexrenderConfig"]["template"]["src"].startswith("file:///t/")
        assert node["user"] == {"id": owner.id}


def texts_of_tail(log: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in log.split("\n")]


def test_only_a_rendering_job_has_a_completion_estimate_and_only_a_queued_one_a_start() -> None:
    for status in JobStatus:
        completion = estimates.estimated_completion_at(
            status=status,
            started_at=T0,
            progress=50,
            estimated_time=60,
            now=T0 + timedelta(seconds=60),
        )
        start = estimates.estimated_start_at(
            status=status, queue_position=1, finished_recently=60, now=T0
        )
        assert (completion is not None) == (status is JobStatus.RENDERING), status
        assert (start is not None) == (status is JobStatus.QUEUED), status


def test_a_job_in_backoff_is_estimated_to_start_when_its_backoff_ends() -> None:
    later = T0 + timedelta(minutes=30)
    at = estimates.estimated_start_at(
        queue_position=None, finished_recently=0, now=T0, not_before=later
    )
    assert at == later  # even with no place in the queue and no history
    past = estimates.estimated_start_at(
        queue_position=2, finished_recently=60, now=T0, not_before=T0 - timedelta(seconds=1)
    )
    assert past == T0 + timedelta(minutes=2)  # a backoff that is over changes nothing
