"""GET /metrics as Prometheus scrapes it, after real actions: claims through GraphQL and through
Nexrender's pickup, progress reports, a websocket subscription, the sweeper; the jobs table as
the database holds it; the token option; and, on PostgreSQL, counters added up over the
processes of `rendertrack serve --workers 2`.

The metrics of one process are shared by every test it runs, so each test compares a scrape
after its actions with one before them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.factory import create_app
from app.metrics import scrape as scrape_text
from app.settings import Settings
from domain.status import JobStatus
from models import Job
from service import clock, jobs, metrics, sweeper
from tests.conftest import Account
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer, open_socket
from tests.observed_server import Scrape, parse, scrape, server_database
from tests.operations import CLAIM, CREATE_USER, REPORT, mutate, submit
from tests.server_process import rendertrack_serve

WAIT = 10.0
JOB_EVENTS = "subscription { jobEvents { kind job { id status } } }"
NAMED_CLAIM = "mutation Claim { claimJob { id } }"
TOKEN = "scrape-me-0123456789abcdef"


def nexrender_job() -> dict[str, Any]:
    return {
        "template": {"src": "file:///mnt/templates/promo.aep", "composition": "main"},
        "assets": [],
        "actions": {"postrender": []},
    }


@pytest_asyncio.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.http_url, timeout=WAIT) as client:
        yield client


async def until(probe: Callable[[], Awaitable[Scrape]], holds: Callable[[Scrape], bool]) -> Scrape:
    """Scrapes until `holds`: a gauge follows what happened a moment later."""
    async with asyncio.timeout(WAIT):
        while not holds(found := await probe()):
            await asyncio.sleep(0.05)
    return found


async def test_claims_reports_and_events_count_once_each_by_api(
    http: httpx.AsyncClient, accounts: dict[str, Account]
) -> None:
    graphql = GraphQLClient(http)
    user, worker = accounts["user"].token, accounts["worker"].token
    first = await submit(graphql, user)
    posted = await http.post(
        "/api/v1/jobs", json=nexrender_job(), headers={"nexrender-secret": user}
    )
    assert posted.status_code == 200, posted.text
    uid = posted.json()["uid"]
    before = await scrape(http)

    claimed = await mutate(graphql, worker, CLAIM)
    assert claimed["claimJob"]["id"] == first
    picked = await http.get("/api/v1/jobs/pickup", headers={"nexrender-secret": worker})
    assert picked.json()["uid"] == uid
    await mutate(graphql, worker, REPORT, id=first, p=40)
    status = (
        await http.get(f"/api/v1/jobs/{uid}/status", headers={"nexrender-secret": worker})
    ).json()
    reported = await http.put(
        f"/api/v1/jobs/{uid}",
        json={**status, "state": "render:dorender", "renderProgress": 30},
        headers={"nexrender-secret": worker},
    )
    assert reported.status_code == 200, reported.text
    after = await scrape(http)

    def grew(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    for path in ("graphql", "nexrender"):
        assert grew("rendertrack_claims_total", path=path) == 1
        assert grew("rendertrack_claim_duration_seconds_count", path=path) == 1
        assert grew("rendertrack_claim_duration_seconds_sum", path=path) > 0
        assert grew("rendertrack_progress_reports_total", path=path) == 1
    assert grew("rendertrack_events_published_total", kind="STATUS_CHANGED") == 2
    assert grew("rendertrack_events_published_total", kind="PROGRESS") == 2
    assert grew("rendertrack_events_published_total", kind="CREATED") == 0
    # One duration per request, under the operation or route it ran.
    assert (
        grew("rendertrack_http_request_duration_seconds_count", operation="mutation anonymous") == 2
    )
    assert (
        grew("rendertrack_http_request_duration_seconds_count", operation="GET /api/v1/jobs/pickup")
        == 1
    )
    assert (
        grew("rendertrack_http_request_duration_seconds_count", operation="PUT /api/v1/jobs/{uid}")
        == 1
    )


async def test_a_claim_that_finds_no_job_is_timed_but_not_counted(
    http: httpx.AsyncClient, accounts: dict[str, Account]
) -> None:
    before = await scrape(http)
    assert (await mutate(GraphQLClient(http), accounts["worker"].token, CLAIM))["claimJob"] is None
    after = await scrape(http)
    path = {"path": "graphql"}
    assert after("rendertrack_claims_total", **path) == before("rendertrack_claims_total", **path)
    count = "rendertrack_claim_duration_seconds_count"
    assert after(count, **path) == before(count, **path) + 1


async def test_jobs_by_status_and_the_queue_depth_are_the_databases(
    http: httpx.AsyncClient, accounts: dict[str, Account]
) -> None:
    owner, worker = accounts["user"].actor, accounts["worker"].actor
    made = [await jobs.submit_job(owner, valid_submission()) for _ in range(5)]
    done = await jobs.claim_next(worker)
    assert done is not None
    await jobs.complete(done.id, actor=worker)
    backing_off = await jobs.claim_next(worker)
    assert backing_off is not None
    await jobs.fail(backing_off.id, "codec missing", actor=worker, retryable=True)  # QUEUED
    await jobs.claim_next(worker)  # RENDERING
    await jobs.cancel(made[-1].id, "not needed", actor=owner)
    await jobs.submit_job(owner, valid_submission(template_path="relative/promo.aep"))  # FAILED

    found = await scrape(http)

    assert found("rendertrack_database_up") == 1
    for status in JobStatus:
        counted = await Job.filter(status=status).count()
        assert found("rendertrack_jobs", status=status.value) == counted, status
    assert found("rendertrack_jobs", status="QUEUED") == 2
    assert found("rendertrack_jobs", status="RENDERING") == 1
    # The job in its retry backoff is QUEUED but no claim would hand it out now.
    assert found("rendertrack_queue_depth") == 1
    clock.advance(30)  # past the backoff, short of the stall timeout (the sweeper runs)
    assert (await scrape(http))("rendertrack_queue_depth") == 2


async def test_websocket_and_subscription_gauges_follow_a_subscription(
    live: LiveServer, http: httpx.AsyncClient, accounts: dict[str, Account]
) -> None:
    sockets, subscriptions = "rendertrack_websocket_connections", "rendertrack_active_subscriptions"
    before = await scrape(http)
    async with open_socket(live) as socket:
        assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
        opened = await until(lambda: scrape(http), lambda s: s(sockets) == before(sockets) + 1)
        assert opened(subscriptions) == before(subscriptions)

        await socket.subscribe(JOB_EVENTS, {})
        await until(lambda: scrape(http), lambda s: s(subscriptions) == before(subscriptions) + 1)
        await socket.send({"id": "1", "type": "complete"})
        await until(lambda: scrape(http), lambda s: s(subscriptions) == before(subscriptions))

        await socket.subscribe(JOB_EVENTS, {}, op_id="2")
        await until(lambda: scrape(http), lambda s: s(subscriptions) == before(subscriptions) + 1)
    # Closed by the client with a subscription running: both go back.
    await until(
        lambda: scrape(http),
        lambda s: s(sockets) == before(sockets) and s(subscriptions) == before(subscriptions),
    )


async def test_the_sweepers_actions_are_counted_by_action(accounts: dict[str, Account]) -> None:
    owner, worker = accounts["user"].actor, accounts["worker"].actor
    await jobs.submit_job(owner, valid_submission())
    assert await jobs.claim_next(worker) is not None  # goes silent
    deadline = clock.now() + timedelta(seconds=60)
    await jobs.submit_job(owner, valid_submission(auto_cancel_at=deadline))
    before = parse(metrics_text())

    await sweeper.sweep_once(clock.now() + timedelta(hours=1))

    after = parse(metrics_text())
    actions = "rendertrack_sweeper_actions_total"
    assert after(actions, action="requeued") == before(actions, action="requeued") + 1
    assert after(actions, action="cancelled") == before(actions, action="cancelled") + 1
    assert after(actions, action="failed") == before(actions, action="failed")


async def test_a_refused_claim_is_neither_timed_nor_counted(
    http: httpx.AsyncClient, accounts: dict[str, Account]
) -> None:
    before = await scrape(http)
    refused = await GraphQLClient(http)(CLAIM, {}, accounts["user"].token)
    assert refused.errors[0]["extensions"]["code"] == "FORBIDDEN"
    pickup = await http.get(
        "/api/v1/jobs/pickup", headers={"nexrender-secret": accounts["user"].token}
    )
    assert pickup.status_code == 403
    after = await scrape(http)
    count = "rendertrack_claim_duration_seconds_count"
    for path in ("graphql", "nexrender"):
        assert after(count, path=path) == before(count, path=path), path


async def test_files_under_static_are_labelled_by_their_mount(http: httpx.AsyncClient) -> None:
    assert (await http.get("/static/dashboard/app.js")).status_code == 200
    after = await scrape(http)
    count = "rendertrack_http_request_duration_seconds_count"
    assert after(count, operation="GET /static/{path}") >= 1
    assert not after.has(count, operation="GET /static/static")


def metrics_text() -> str:
    return scrape_text(None).decode()


async def test_graphql_operations_are_labelled_by_type_and_name_within_bounds(
    http: httpx.AsyncClient, accounts: dict[str, Account]
) -> None:
    token = accounts["user"].token
    long_name = "Q" + "x" * 80
    documents = [
        ("query Me { me { id } }", None, "query Me"),
        ("{ me { id } }", None, "query anonymous"),
        ("query A { me { id } } query B { me { email } }", "B", "query B"),
        ("query A { me { id } }", "Missing", "anonymous"),  # no such operation: refused
        (f"query {long_name} {{ me {{ id }} }}", None, "query other"),
    ]
    before = await scrape(http)
    for document, name, _ in documents:
        body: dict[str, Any] = {"query": document, **({"operationName": name} if name else {})}
        await http.post("/graphql", json=body, headers={"Authorization": f"Bearer {token}"})
    after = await scrape(http)
    count = "rendertrack_http_request_duration_seconds_count"
    for _, _, label in documents:
        assert after(count, operation=label) - before(count, operation=label) >= 1, label
    assert not after.has(count, operation=f"query {long_name}")


def test_operation_names_past_the_bound_collapse_into_other() -> None:
    labels = metrics.OperationLabels(most=3)
    assert [labels.graphql("query", f"Q{n}") for n in range(5)] == [
        "query Q0", "query Q1", "query Q2", "query other", "query other",
    ]  # fmt: skip
    assert labels.graphql("query", "Q1") == "query Q1"  # one seen before keeps its series
    assert labels.graphql("mutation", None) == "mutation anonymous"
    assert labels.graphql("", None) == "anonymous"


async def test_a_metrics_token_is_required_once_set(db: str) -> None:
    app = create_app(Settings(database_url=db, metrics_token=TOKEN), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": TOKEN},
        ):
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["code"] == "UNAUTHENTICATED"
            assert "rendertrack_" not in refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        found = await scrape(http, Authorization=f"Bearer {TOKEN}")
    assert found.has("rendertrack_jobs", status="QUEUED")


async def test_without_a_token_setting_metrics_need_none(db: str) -> None:
    app = create_app(Settings(database_url=db), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as http:
        found = await scrape(http)
    assert found.has("rendertrack_claims_total", path="nexrender")
    assert found.has("rendertrack_queue_depth")


def test_a_metrics_token_setting_must_be_long_and_is_never_quoted_back() -> None:
    with pytest.raises(ValueError, match="RENDERTRACK_METRICS_TOKEN") as refused:
        Settings.from_env({"RENDERTRACK_METRICS_TOKEN": "short-secret"})
    assert "short-secret" not in str(refused.value)
    settings = Settings.from_env({"RENDERTRACK_METRICS_TOKEN": TOKEN})
    assert settings.metrics_token == TOKEN
    assert TOKEN not in repr(settings)
    assert Settings.from_env({}).metrics_token is None


# --- several processes ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres_only
async def test_counters_add_up_over_the_processes_of_rendertrack_serve_workers(
    tmp_path: Path, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("--workers above 1 needs PostgreSQL")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = {"RENDERTRACK_LOG_FORMAT": "json", "TMPDIR": str(scratch)}
    async with (
        server_database(tmp_path) as url,
        rendertrack_serve(url, tmp_path / "logs", "--workers", "2", env=environment) as server,
    ):
        admin = await server.read_token()
        await server.until_healthy()
        async with httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as http:
            created = await mutate(
                GraphQLClient(http), admin, CREATE_USER, email="w@farm.local", role="WORKER"
            )
            worker = created["createUser"]["token"]
            for _ in range(24):
                await submit(GraphQLClient(http), admin)
        assert len(list(scratch.glob("rendertrack-metrics-*"))) == 1

        claims = 0
        while len(pids_that_served(server.log_text(), "mutation Claim")) < 2:
            assert claims < 24, "every claim went to one process"
            async with httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as fresh:
                assert (await mutate(GraphQLClient(fresh), worker, NAMED_CLAIM))["claimJob"]
            claims += 1

        for _ in range(6):  # new connections: any process answers
            async with httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as fresh:
                found = await scrape(fresh)
            assert found("rendertrack_claims_total", path="graphql") == claims
            assert found("rendertrack_events_published_total", kind="CREATED") == 24
            assert found("rendertrack_jobs", status="RENDERING") == claims
        await server.stop()
    assert not list(scratch.glob("rendertrack-metrics-*")), "the metrics folder outlived the server"


def pids_that_served(log: str, operation: str) -> set[int]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return {line["pid"] for line in lines if line.get("operation") == operation}
