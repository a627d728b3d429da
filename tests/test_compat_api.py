"""Nexrender's REST API under /api/v1 against the real app: every endpoint with each role, the
flows of real workers (1.8.16 lists and PUTs whole jobs; 1.63 picks up and PUTs status views),
their errors, hand-backs, cancellations, a silent worker taking its job back, and the history
each step leaves. Every job JSON answered passes @nexrender/types' validate()."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from tortoise import connections

from app.factory import create_app
from app.settings import Settings
from compat.writes import CANCEL_REASON
from domain import nexrender_jobs
from domain.events import Duty, JobEventKind
from domain.status import JobStage, JobStatus
from models import Job, JobEventRecord
from service import clock, event_store, jobs, settings, sweeper, users
from service.settings import ServiceSettings
from testkit.sql_log import capture_sql
from tests.conftest import Account
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient
from tests.nexrender_types import validate, validate_status

S = JobStatus
K = JobEventKind
STALL_TIMEOUT = 600.0


class Rest:
    """The Nexrender API as a client sees it: every answer checked for its shape."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"nexrender-secret": token} if token is not None else {}
        if body is not None:
            kwargs["json"] = body
        response = await self.http.request(method, "/api/v1" + path, headers=headers, **kwargs)
        assert response.headers["content-type"].startswith("application/json"), response.text
        payload = response.json()
        answered = payload if isinstance(payload, list) else [payload] if payload else []
        if response.status_code == 200 and path.startswith("/jobs"):
            check = validate_status if path.endswith("/status") else validate
            for job in answered:
                assert check(job), job
        if response.status_code not in (200, 413):  # 413: app/body_limit.py answers for all
            assert set(payload) >= {"error", "code"}, payload
            assert "Traceback" not in response.text
        return response

    async def ok(self, method: str, path: str, token: str, body: Any = None) -> Any:
        response = await self.call(method, path, token, body)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, token: str, job: dict[str, Any]) -> dict[str, Any]:
        answered: dict[str, Any] = await self.ok("POST", "/jobs", token, job)
        return answered

    async def put(self, uid: str, token: str, body: dict[str, Any]) -> httpx.Response:
        return await self.call("PUT", f"/jobs/{uid}", token, body)


@pytest_asyncio.fixture
async def rest(db: str) -> AsyncIterator[Rest]:
    app = create_app(Settings(database_url=db), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as http:
        yield Rest(http)


@pytest.fixture
def stall_timeout() -> Iterator[float]:
    previous = settings.configure(ServiceSettings(stall_timeout_seconds=STALL_TIMEOUT))
    yield STALL_TIMEOUT
    settings.configure(previous)


def nexrender_job(**changes: Any) -> dict[str, Any]:
    """The job NEXRENDER.md renders with a stand-in aerender."""
    job: dict[str, Any] = {
        "template": {
            "src": "file:///mnt/templates/promo.aep",
            "composition": "main",
            "outputExt": "mp4",
            "name": "template.aep",
        },
        "assets": [],
        "actions": {"postrender": []},
    }
    job.update(changes)
    return job


async def stored(uid: str) -> Job:
    return await Job.get(id=uid)


async def history(uid: str) -> list[tuple[JobEventKind, JobStatus, int, str | None]]:
    events = await event_store.job_events(uid, 0)
    return [(e.kind, e.status, e.progress, e.state.get("stage")) for e in events]


async def posted(rest: Rest, accounts: dict[str, Account], **changes: Any) -> str:
    return str((await rest.post(accounts["user"].token, nexrender_job(**changes)))["uid"])


async def picked(rest: Rest, token: str, tags: str = "") -> dict[str, Any]:
    answered: dict[str, Any] = await rest.ok("GET", "/jobs/pickup" + tags, token)
    return answered


# --- authentication ----------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("GET", "/jobs/status"),
    ("GET", "/jobs/pickup"),
    ("GET", "/jobs/pickup/gpu"),
    ("GET", "/jobs/x1"),
    ("GET", "/jobs/x1/status"),
    ("PUT", "/jobs/x1"),
    ("DELETE", "/jobs/x1"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_a_missing_wrong_or_revoked_secret_is_403_with_a_json_error(
    rest: Rest, accounts: dict[str, Account], method: str, path: str
) -> None:
    await users.deactivate_user(accounts["other"].id)
    body = nexrender_job() if method in ("POST", "PUT") else None
    for token in (None, "", "rt_wrong", accounts["other"].token):
        response = await rest.call(method, path, token, body)
        assert response.status_code == 403, (token, response.text)
        assert response.json()["code"] == "UNAUTHENTICATED"
        assert "nexrender-secret" in response.json()["error"]


async def test_health_needs_no_secret(rest: Rest) -> None:
    response = await rest.call("GET", "/health", None)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


# --- POST /jobs --------------------------------------------------------------------------------


async def test_a_posted_job_is_kept_whole_and_answered_as_nexrender_json(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    job = nexrender_job(
        uid="client-chosen",
        priority=2,
        tags="gpu, fast",
        assets=[
            {"type": "static", "src": "https://data.example.com/rows.csv"},
            {"type": "data", "layerName": "title", "property": "Source Text", "value": "Hi"},
        ],
        actions={
            "postrender": [
                {"module": "@nexrender/action-encode", "output": "encoded.mp4", "preset": "mp4"},
                {"module": "@nexrender/action-copy", "input": "encoded.mp4",
                 "output": "/mnt/renders/spring/promo-final.mp4"},
            ]
        },
        custom={"n": 1.5},
    )  # fmt: skip
    answered = await rest.post(accounts["user"].token, job)

    row = await stored(answered["uid"])
    assert answered["uid"] == row.id != "client-chosen"
    assert answered["state"] == "queued" and row.status is S.QUEUED
    assert answered["priority"] == 2 and row.priority == 7
    assert answered["tags"] == "gpu,fast" == row.tags
    assert answered["creator"] == "user@example.com" and answered["executor"] is None
    assert answered["custom"] == {"n": 1.5} and answered["renderProgress"] == 0
    assert list(answered["timings"]) == ["created", "queued"]
    assert row.nexrender_config == job
    assert row.template_path == "file:///mnt/templates/promo.aep"
    assert row.project_name == "promo"
    assert row.data_path == "https://data.example.com/rows.csv"
    assert row.output_path == "/mnt/renders/spring/promo-final.mp4"
    assert row.output_name == "promo-final.mp4"


async def test_a_job_without_outputs_or_data_files_renders_where_the_worker_puts_it(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    row = await stored(uid)
    assert (row.data_path, row.output_path, row.output_name) == ("inline", "worker", f"{uid}.mp4")
    assert row.priority == 5 and row.tags is None


@pytest.mark.parametrize(("nexrender", "rendertrack"), [(0, 5), (-10, 1), (3, 8), (1000, 10)])
async def test_nexrender_priorities_are_mapped_and_answered_back(
    rest: Rest, accounts: dict[str, Account], nexrender: int, rendertrack: int
) -> None:
    answered = await rest.post(accounts["user"].token, nexrender_job(priority=nexrender))
    assert (await stored(answered["uid"])).priority == rendertrack
    assert answered["priority"] == nexrender


COPY_TO_MKV = {"module": "@nexrender/action-copy", "output": "/mnt/out/result.mkv"}
INVALID_JOBS = [
    (
        nexrender_job(template={"src": "templates/promo.aep"}),
        {"template.src", "template.composition"},
    ),
    (nexrender_job(template={"src": "/mnt/t/promo.mp4", "composition": "c"}), {"template.src"}),
    (
        nexrender_job(actions={"postrender": [{"module": "./evil.js"}]}, assets=[{"type": "x"}]),
        {"assets[0].type", "actions.postrender[0].module"},
    ),
    (nexrender_job(actions={"postrender": [COPY_TO_MKV]}), {"actions.postrender[0].output"}),
    (nexrender_job(priority="high", tags="a/b"), {"priority", "tags"}),
    (nexrender_job(assets="none"), {"assets"}),
]


@pytest.mark.parametrize(("job", "fields"), INVALID_JOBS)
async def test_an_invalid_job_is_400_naming_its_fields_and_nothing_is_stored(
    rest: Rest, accounts: dict[str, Account], job: dict[str, Any], fields: set[str]
) -> None:
    response = await rest.call("POST", "/jobs", accounts["user"].token, job)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "BAD_USER_INPUT"
    assert {item["field"] for item in body["fields"]} == fields
    assert all(field in body["error"] for field in fields)
    assert await Job.all().count() == 0 and await JobEventRecord.all().count() == 0


async def test_the_allowed_roots_apply_to_a_posted_job(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    previous = settings.configure(ServiceSettings(allowed_roots=("/mnt/allowed",)))
    try:
        response = await rest.call("POST", "/jobs", accounts["user"].token, nexrender_job())
    finally:
        settings.configure(previous)
    assert response.status_code == 400
    assert {item["field"] for item in response.json()["fields"]} == {"template.src"}
    assert await Job.all().count() == 0


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"{not json", 400), (b"[1, 2]", 400), (b'"job"', 400), (b"\xff\xfe", 400)],
)
async def test_a_body_that_is_no_json_object_is_400(
    rest: Rest, accounts: dict[str, Account], content: bytes, status: int
) -> None:
    response = await rest.call("POST", "/jobs", accounts["user"].token, content=content)
    assert response.status_code == status
    assert response.json()["fields"][0]["field"] == "(body)"


async def test_a_body_over_the_limit_is_413_and_a_render_spec_over_its_own_limit_400(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    huge = nexrender_job(padding="x" * (2 * 1024 * 1024))
    assert (await rest.call("POST", "/jobs", accounts["user"].token, huge)).status_code == 413

    async def streamed() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
        for _ in range(3):
            yield b" " * (512 * 1024)

    token = accounts["user"].token
    response = await rest.call("POST", "/jobs", token, content=streamed())
    assert response.status_code == 413
    big = nexrender_job(padding="x" * (300 * 1024))
    response = await rest.call("POST", "/jobs", accounts["user"].token, big)
    assert response.status_code == 400 and response.json()["fields"][0]["field"] == "(job)"
    assert await Job.all().count() == 0


async def test_a_worker_does_not_submit(rest: Rest, accounts: dict[str, Account]) -> None:
    response = await rest.call("POST", "/jobs", accounts["worker"].token, nexrender_job())
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"


# --- reading -----------------------------------------------------------------------------------


async def test_each_role_reads_what_the_one_visibility_rule_shows(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    mine = await posted(rest, accounts)
    theirs = (await rest.post(accounts["other"].token, nexrender_job()))["uid"]
    held = (await rest.post(accounts["other"].token, nexrender_job(priority=9)))["uid"]
    assert (await picked(rest, accounts["worker2"].token))["uid"] == held
    plain = (await jobs.submit_job(accounts["user"].actor, valid_submission())).id

    def uids(listing: list[dict[str, Any]]) -> set[str]:
        return {job["uid"] for job in listing}

    user, other, admin = (accounts[name].token for name in ("user", "other", "admin"))
    worker, worker2 = accounts["worker"].token, accounts["worker2"].token
    assert uids(await rest.ok("GET", "/jobs", user)) == {mine, plain}
    assert uids(await rest.ok("GET", "/jobs", other)) == {theirs, held}
    assert uids(await rest.ok("GET", "/jobs", admin)) == {mine, theirs, held, plain}
    # Workers: what a Nexrender worker may claim now (a spec-less job is not one), and its own.
    assert [job["uid"] for job in await rest.ok("GET", "/jobs", worker)] == [mine, theirs]
    assert uids(await rest.ok("GET", "/jobs", worker2)) == {mine, theirs, held}
    assert uids(await rest.ok("GET", "/jobs/status", worker2)) == {mine, theirs, held}

    for token, uid, status in [
        (user, theirs, 404),
        (other, mine, 404),
        (worker, held, 404),
        (worker2, held, 200),
        (admin, held, 200),
        (user, "x" * 40, 404),
        (user, "nosuchjob", 404),
    ]:
        for path in (f"/jobs/{uid}", f"/jobs/{uid}/status"):
            response = await rest.call("GET", path, token)
            assert response.status_code == status, (token, path, response.text)

    seen_by_worker = await rest.ok("GET", f"/jobs/{held}", worker2)
    assert seen_by_worker["creator"] is None and seen_by_worker["executor"] == "worker2"
    assert (await rest.ok("GET", f"/jobs/{held}/status", other))["jobExecutor"] == "worker2"
    spec_less = await rest.ok("GET", f"/jobs/{plain}", user)
    assert spec_less["template"]["src"] == "C:\\jobs\\promo.aep"


async def test_the_status_view_has_exactly_nexrenders_fields(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts, tags="gpu")
    view = await rest.ok("GET", f"/jobs/{uid}/status", accounts["user"].token)
    assert view["state"] == "queued" and view["tags"] == "gpu" and view["type"] == "default"
    assert view["jobCreator"] == "user@example.com" and view["error"] is None


# --- pickup ------------------------------------------------------------------------------------


async def test_pickup_follows_the_queue_order_and_answers_empty_when_nothing_is_left(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    low = await posted(rest, accounts, priority=-2)
    first = await posted(rest, accounts)
    urgent = await posted(rest, accounts, priority=4)
    second = await posted(rest, accounts)
    await jobs.submit_job(accounts["user"].actor, valid_submission())  # no spec: not for it
    token = accounts["worker"].token
    order = [(await picked(rest, token))["uid"] for _ in range(4)]
    assert order == [urgent, first, second, low]
    assert await picked(rest, token) == {}

    job = await stored(urgent)
    assert job.status is S.RENDERING and job.worker_id == accounts["worker"].id
    assert job.attempts == 1 and job.lease == 1


async def test_the_pickup_answers_the_job_picked(rest: Rest, accounts: dict[str, Account]) -> None:
    uid = await posted(rest, accounts)
    with capture_sql() as seen:
        job = await picked(rest, accounts["worker"].token)
    # The render spec comes with the claimed row, not from a second read (render_specs).
    spec_reads = [sql.one_line for sql in seen if sql.one_line.startswith('SELECT "id" "0"')]
    assert spec_reads == []
    assert job["uid"] == uid and job["state"] == "picked"
    assert job["executor"] == "worker" and job["startedAt"] is not None
    assert job["template"] == nexrender_job()["template"]
    shown = await rest.ok("GET", f"/jobs/{uid}", accounts["worker"].token)
    assert shown["state"] == "started"


@pytest.mark.parametrize("role", ["user", "admin"])
async def test_only_workers_pick_up(rest: Rest, accounts: dict[str, Account], role: str) -> None:
    await posted(rest, accounts)
    response = await rest.call("GET", "/jobs/pickup", accounts[role].token)
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"


async def test_pickup_by_tags_takes_only_jobs_carrying_every_tag(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    plain = await posted(rest, accounts)
    gpu = await posted(rest, accounts, tags="gpu")
    both = await posted(rest, accounts, tags="fast,gpu,4k")
    lookalike = await posted(rest, accounts, tags="gpu2,xgpu")
    token = accounts["worker"].token
    assert (await picked(rest, token, "/gpu,fast"))["uid"] == both
    assert (await picked(rest, token, "/gpu"))["uid"] == gpu
    assert await picked(rest, token, "/gpu") == {}
    assert (await picked(rest, token))["uid"] == plain  # no tags asked: any job
    assert (await picked(rest, token))["uid"] == lookalike
    response = await rest.call("GET", "/jobs/pickup/a%20b", token)
    assert response.status_code == 400 and response.json()["fields"][0]["field"] == "tags"


async def test_the_claim_with_tags_still_reads_the_partial_queue_index(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    for tags in ("gpu", "cpu", "gpu,fast"):
        await posted(rest, accounts, tags=tags)
    with capture_sql() as seen:
        claimed = await jobs.claim_next(
            accounts["worker"].actor, tags="gpu,fast", only_renderable=True
        )
    assert claimed is not None and claimed.tags == "gpu,fast"
    sql, values = next(
        (statement.text, statement.parameters)
        for statement in seen
        if statement.parameters is not None and "ORDER BY" in statement.text
    )
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_script("SET enable_seqscan = off")
        try:
            rows = await connection.execute_query_dict(
                "EXPLAIN " + sql.replace(" FOR UPDATE SKIP LOCKED", ""), values
            )
        finally:
            await connection.execute_script("SET enable_seqscan = on")
        plan = "\n".join(row["QUERY PLAN"] for row in rows)
    else:
        rows = await connection.execute_query_dict("EXPLAIN QUERY PLAN " + sql, values)
        plan = "\n".join(str(row["detail"]) for row in rows)
    assert "idx_jobs_claim" in plan, plan


async def test_two_workers_picking_up_at_once_never_share_a_job(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uids = {await posted(rest, accounts) for _ in range(3)}
    tokens = [accounts["worker"].token, accounts["worker2"].token] * 3
    answers = await asyncio.gather(*(picked(rest, token) for token in tokens))
    taken = [answer["uid"] for answer in answers if answer]
    assert sorted(taken) == sorted(uids) and answers.count({}) == 3


# --- worker 1.8.16: GET /jobs, PUT the whole job ------------------------------------------------


async def test_worker_1_8_picks_from_the_list_and_puts_whole_jobs(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    listing = await rest.ok("GET", "/jobs", token)
    job = next(job for job in listing if job["state"] == "queued")
    assert job["uid"] == uid

    job["state"] = "started"
    started = await rest.ok("PUT", f"/jobs/{uid}", token, job)
    assert started["state"] == "started" and started["executor"] == "worker"
    assert (await stored(uid)).worker_id == accounts["worker"].id

    job.update(
        state="finished",
        renderProgress=100,
        output=f"/tmp/nexrender/{uid}/result.mp4",
        workpath=f"/tmp/nexrender/{uid}",
        timings={"render:setup": 1, "render:dorender": 2},
    )
    finished = await rest.ok("PUT", f"/jobs/{uid}", token, job)
    assert finished["state"] == "finished" and finished["renderProgress"] == 100
    assert finished["finishedAt"] is not None
    assert list(finished["timings"]) == ["created", "queued", "started", "finished"]
    row = await stored(uid)
    assert row.status is S.COMPLETED and row.progress == 100 and row.stage is None
    assert row.nexrender_config == nexrender_job()  # a PUT merges nothing into the spec
    assert [kind for kind, *_ in await history(uid)] == [K.CREATED] + [K.STATUS_CHANGED] * 4


async def test_of_two_workers_putting_started_on_one_job_one_wins(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    job = (await rest.ok("GET", "/jobs", accounts["worker"].token))[0]
    job["state"] = "started"
    answers = await asyncio.gather(
        rest.put(uid, accounts["worker"].token, job), rest.put(uid, accounts["worker2"].token, job)
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes[0] == 200 and codes[1] in (404, 409), [a.text for a in answers]
    winner = accounts["worker"] if answers[0].status_code == 200 else accounts["worker2"]
    row = await stored(uid)
    assert row.worker_id == winner.id and row.attempts == 1
    assert [kind for kind, status, *_ in await history(uid) if status is S.RENDERING] == [
        K.STATUS_CHANGED
    ]


async def test_a_started_put_on_a_job_a_nexrender_worker_cannot_take_is_refused(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    token = accounts["worker"].token
    plain = (await jobs.submit_job(accounts["user"].actor, valid_submission())).id
    response = await rest.put(plain, token, {"state": "started"})
    assert response.status_code == 409 and "Nexrender" in response.json()["error"]

    waiting = await posted(rest, accounts)
    await jobs.claim(waiting, accounts["worker2"].actor)
    await jobs.fail(waiting, "flaky", retryable=True)  # in a backoff now
    response = await rest.put(waiting, token, {"state": "started"})
    assert response.status_code == 409 and "backoff" in response.json()["error"]
    assert (await stored(plain)).status is (await stored(waiting)).status is S.QUEUED


# --- worker 1.63: pickup, then status views --------------------------------------------------


async def test_worker_1_63_reports_stages_and_progress_until_finished(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    job = await picked(rest, token)
    job["state"] = "started"
    await rest.ok("PUT", f"/jobs/{uid}", token, job)
    status = await rest.ok("GET", f"/jobs/{uid}/status", token)

    for state in ("render:setup", "render:download", "render:prerender"):
        answered = await rest.ok("PUT", f"/jobs/{uid}", token, {**status, "state": state})
        assert answered["state"] == state
    for percent in (25, 50, 75, 100):
        body = {**status, "state": "render:dorender", "renderProgress": percent}
        answered = await rest.ok("PUT", f"/jobs/{uid}", token, body)
        assert answered["state"] == "render:dorender"
        assert answered["renderProgress"] == min(percent, 99)  # 100 is COMPLETED only
    await rest.ok("PUT", f"/jobs/{uid}", token, {**status, "state": "render:postrender"})
    row = await stored(uid)
    assert row.stage is JobStage.POSTRENDER and row.progress == 99

    finished = await rest.ok(
        "PUT", f"/jobs/{uid}", token, {**status, "state": "finished", "renderProgress": 100}
    )
    assert finished["state"] == "finished" and finished["renderProgress"] == 100
    assert list(finished["timings"]) == [
        "created", "queued", "started", "render:setup", "render:download", "render:prerender",
        "render:dorender", "render:postrender", "finished",
    ]  # fmt: skip
    row = await stored(uid)
    assert row.status is S.COMPLETED and row.stage is None

    assert (await history(uid))[3:] == [
        (K.STATUS_CHANGED, S.RENDERING, 0, None),  # the pickup
        (K.PROGRESS, S.RENDERING, 0, "SETUP"),
        (K.PROGRESS, S.RENDERING, 0, "DOWNLOADING"),
        (K.PROGRESS, S.RENDERING, 0, "PRERENDER"),
        (K.PROGRESS, S.RENDERING, 25, "RENDERING"),
        (K.PROGRESS, S.RENDERING, 50, "RENDERING"),
        (K.PROGRESS, S.RENDERING, 75, "RENDERING"),
        (K.PROGRESS, S.RENDERING, 99, "RENDERING"),
        (K.PROGRESS, S.RENDERING, 99, "POSTRENDER"),
        (K.STATUS_CHANGED, S.COMPLETED, 100, None),
    ]


async def test_a_report_that_says_nothing_new_renews_the_lease_without_an_event(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    await picked(rest, token)
    before = await stored(uid)
    clock.advance(30)
    await rest.ok("PUT", f"/jobs/{uid}", token, {"state": "started"})
    await rest.ok("PUT", f"/jobs/{uid}", token, {"uid": uid})
    after = await stored(uid)
    assert after.sequence == before.sequence and after.heartbeat_at > before.heartbeat_at


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("aerender Error: After Effects error: layer missing", "aerender Error: After Effects"),
        (["Error: first", "Error: second"], "Error: first\n\nError: second"),
        ({}, nexrender_jobs.NO_ERROR_MESSAGE),
    ],
)
async def test_an_error_report_fails_the_job_with_its_text(
    rest: Rest, accounts: dict[str, Account], error: object, message: str
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    job = await picked(rest, token)
    job.update(state="error", error=error, errorAt="2026-01-01T00:00:00.000Z")
    answered = await rest.ok("PUT", f"/jobs/{uid}", token, job)
    assert answered["state"] == "error" and answered["error"].startswith(message)
    assert answered["errorAt"] is not None
    row = await stored(uid)
    assert row.status is S.FAILED and row.error_message.startswith(message)


async def test_an_error_seen_while_rendering_is_logged_and_the_render_goes_on(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    await picked(rest, token)
    line = "aerender Error: After Effects error: missing footage"
    answered = await rest.ok("PUT", f"/jobs/{uid}", token, {"state": "started", "error": line})
    assert answered["state"] == "started"
    assert (await jobs.log_text(await stored(uid))).endswith(line)
    await rest.ok("PUT", f"/jobs/{uid}", token, {"state": "error", "error": line})
    assert (await stored(uid)).error_message == line


async def test_a_worker_shutting_down_hands_its_job_back(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    job = await picked(rest, token)
    await rest.ok(
        "PUT", f"/jobs/{uid}", token, {**job, "state": "render:dorender", "renderProgress": 30}
    )
    answered = await rest.ok("PUT", f"/jobs/{uid}", token, {**job, "state": "queued"})
    assert answered["state"] == "queued" and answered["renderProgress"] == 0
    row = await stored(uid)
    assert row.status is S.QUEUED and row.worker_id is None and row.attempts == 0
    assert row.stage is None
    assert (await picked(rest, accounts["worker2"].token))["uid"] == uid
    # The worker that handed it back has no say on it any more.
    response = await rest.put(uid, token, {"state": "render:dorender", "renderProgress": 40})
    assert response.status_code == 404
    assert (await stored(uid)).worker_id == accounts["worker2"].id


# --- a job that is no longer the worker's ------------------------------------------------------


CANCEL = 'mutation($id: ID!) { cancelJob(id: $id, reason: "client changed their mind") { status } }'


@pytest.mark.parametrize("via", ["graphql", "rest"])
async def test_a_put_after_a_cancellation_is_refused_and_the_job_stays_cancelled(
    rest: Rest, api: GraphQLClient, accounts: dict[str, Account], via: str
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    job = await picked(rest, token)
    await rest.ok(
        "PUT", f"/jobs/{uid}", token, {**job, "state": "render:dorender", "renderProgress": 20}
    )
    if via == "graphql":
        response = await api(CANCEL, {"id": uid}, accounts["user"].token)
        assert response.data["cancelJob"]["status"] == "CANCELLED"
    else:
        cancelled = await rest.ok("DELETE", f"/jobs/{uid}", accounts["user"].token)
        assert cancelled["state"] == "error" and cancelled["error"].startswith("Cancelled")
    before = await stored(uid)

    for body in (
        {"state": "render:dorender", "renderProgress": 40},
        {**job, "state": "finished", "renderProgress": 100},
        {"state": "queued"},
        {"state": "started"},
    ):
        response = await rest.put(uid, token, body)
        assert response.status_code == 409, (body, response.text)
        assert "CANCELLED" in response.json()["error"] or "no longer" in response.json()["error"]
    # Worker 1.8.16 reports `error` after its `finished` was refused: agreed with, changing
    # nothing, so that its loop goes on.
    agreed = await rest.ok("PUT", f"/jobs/{uid}", token, {**job, "state": "error", "error": {}})
    assert agreed["state"] == "error" and agreed["error"].startswith("Cancelled")
    after = await stored(uid)
    assert after.status is S.CANCELLED and after.sequence == before.sequence
    assert after.progress == 20 and after.worker_id == accounts["worker"].id
    # Another worker is told nothing about it.
    response = await rest.put(uid, accounts["worker2"].token, {"state": "error"})
    assert response.status_code == 404


async def test_a_completed_job_refuses_more_reports(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    await picked(rest, token)
    await rest.ok("PUT", f"/jobs/{uid}", token, {"state": "finished"})
    for body in ({"state": "finished"}, {"state": "error", "error": "late"}, {"state": "started"}):
        response = await rest.put(uid, token, body)
        assert response.status_code == 409 and response.json()["code"] == "INVALID_TRANSITION"
    assert (await stored(uid)).status is S.COMPLETED


async def test_who_may_put(rest: Rest, accounts: dict[str, Account]) -> None:
    uid = await posted(rest, accounts)
    queued = await posted(rest, accounts)
    await picked(rest, accounts["worker"].token)
    owner = await rest.put(uid, accounts["user"].token, {"state": "render:dorender"})
    assert owner.status_code == 403 and owner.json()["code"] == "FORBIDDEN"
    stranger = await rest.put(uid, accounts["other"].token, {"state": "finished"})
    assert stranger.status_code == 404
    other_worker = await rest.put(uid, accounts["worker2"].token, {"state": "finished"})
    assert other_worker.status_code == 404
    # An admin moves jobs (finished, error, queued) but does not render them.
    admin_claim = await rest.put(queued, accounts["admin"].token, {"state": "started"})
    assert admin_claim.status_code == 409 and admin_claim.json()["code"] == "INVALID_TRANSITION"
    worker_on_queued = await rest.put(queued, accounts["worker2"].token, {"state": "finished"})
    assert worker_on_queued.status_code == 409
    bad_state = await rest.put(uid, accounts["worker"].token, {"state": "done"})
    assert bad_state.status_code == 400 and bad_state.json()["fields"][0]["field"] == "state"
    not_an_object = await rest.call("PUT", f"/jobs/{uid}", accounts["worker"].token, [1])
    assert not_an_object.status_code == 400
    assert (await stored(uid)).status is S.RENDERING
    assert (await stored(queued)).status is S.QUEUED

    admin = await rest.ok("PUT", f"/jobs/{uid}", accounts["admin"].token, {"state": "finished"})
    assert admin["state"] == "finished"


# --- a silent worker takes its job back -------------------------------------------------------


async def stall(uid: str) -> None:
    clock.advance(STALL_TIMEOUT + 1)
    report = await sweeper.sweep_once()
    assert report.requeued >= 1
    assert (await stored(uid)).status is S.QUEUED


async def test_a_worker_whose_job_was_requeued_for_silence_takes_it_back(
    rest: Rest, accounts: dict[str, Account], stall_timeout: float
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    job = await picked(rest, token)
    await rest.ok(
        "PUT", f"/jobs/{uid}", token, {**job, "state": "render:dorender", "renderProgress": 10}
    )
    await stall(uid)

    answered = await rest.ok(
        "PUT", f"/jobs/{uid}", token, {**job, "state": "render:dorender", "renderProgress": 60}
    )
    assert answered["state"] == "render:dorender" and answered["renderProgress"] == 60
    row = await stored(uid)
    assert row.status is S.RENDERING and row.worker_id == accounts["worker"].id
    assert row.attempts == 2 and row.lease == 2 and row.stage is JobStage.RENDERING
    assert "took the job back" in (await jobs.log_text(row) or "")
    tail = await event_store.job_events(uid, row.sequence - 3)
    assert [(e.kind, e.status, e.duty, e.actor_id) for e in tail] == [
        (K.STATUS_CHANGED, S.QUEUED, Duty.STALL_RECOVERY, None),
        (K.STATUS_CHANGED, S.RENDERING, None, accounts["worker"].id),
        (K.PROGRESS, S.RENDERING, None, accounts["worker"].id),
    ]
    finished = await rest.ok("PUT", f"/jobs/{uid}", token, {"state": "finished"})
    assert finished["state"] == "finished"


async def test_a_silent_worker_that_finishes_takes_its_job_back_and_completes_it(
    rest: Rest, accounts: dict[str, Account], stall_timeout: float
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    await picked(rest, token)
    await stall(uid)
    answered = await rest.ok("PUT", f"/jobs/{uid}", token, {"state": "finished"})
    assert answered["state"] == "finished"


async def test_a_requeued_job_is_not_taken_back_once_something_else_happened(
    rest: Rest, accounts: dict[str, Account], stall_timeout: float
) -> None:
    token = accounts["worker"].token
    render = {"state": "render:dorender", "renderProgress": 50}

    taken = await posted(rest, accounts)
    await picked(rest, token)
    await stall(taken)
    assert (await picked(rest, accounts["worker2"].token))["uid"] == taken
    assert (await rest.put(taken, token, render)).status_code == 404
    assert (await stored(taken)).worker_id == accounts["worker2"].id

    reprioritised = await posted(rest, accounts)
    await picked(rest, token)
    await stall(reprioritised)
    await jobs.set_priority(reprioritised, 9)
    assert (await rest.put(reprioritised, token, render)).status_code == 409
    other = await rest.put(reprioritised, accounts["worker2"].token, render)
    assert other.status_code == 409
    assert (await stored(reprioritised)).status is S.QUEUED


# --- DELETE ------------------------------------------------------------------------------------


async def test_delete_cancels_and_keeps_the_job_and_its_history(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    assert (await rest.call("DELETE", f"/jobs/{uid}", accounts["other"].token)).status_code == 404
    worker = await rest.call("DELETE", f"/jobs/{uid}", accounts["worker"].token)
    assert worker.status_code == 403
    answered = await rest.ok("DELETE", f"/jobs/{uid}", accounts["user"].token)
    assert answered["uid"] == uid and answered["state"] == "error"
    assert answered["error"] == f"Cancelled: {CANCEL_REASON}"
    row = await stored(uid)
    assert row.status is S.CANCELLED
    assert [status for _, status, *_ in await history(uid)][-1] is S.CANCELLED
    again = await rest.call("DELETE", f"/jobs/{uid}", accounts["admin"].token)
    assert again.status_code == 409 and again.json()["code"] == "INVALID_TRANSITION"
    shown = await rest.ok("GET", f"/jobs/{uid}", accounts["user"].token)
    assert "error" in shown["timings"]


async def test_an_admin_deletes_anyones_job(rest: Rest, accounts: dict[str, Account]) -> None:
    uid = await posted(rest, accounts)
    await picked(rest, accounts["worker"].token)
    answered = await rest.ok("DELETE", f"/jobs/{uid}", accounts["admin"].token)
    assert answered["state"] == "error" and (await stored(uid)).status is S.CANCELLED


# --- the stage over GraphQL --------------------------------------------------------------------

REPORT = """
mutation($id: ID!, $progress: Int!, $stage: JobStage) {
  reportProgress(id: $id, progress: $progress, stage: $stage) { status progress stage }
}"""
EVENTS = """
query($id: ID!) { job(id: $id) { stage events { edges { node { kind job { progress stage } } } } } }
"""


async def test_graphql_reports_and_shows_the_stage_and_the_history_keeps_it(
    rest: Rest, api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    uid = await posted(rest, accounts)
    token = accounts["worker"].token
    await picked(rest, token)
    await rest.ok("PUT", f"/jobs/{uid}", token, {"state": "render:dorender", "renderProgress": 40})
    for progress, stage in ((40, "POSTRENDER"), (40, "UPLOADING"), (50, "UPLOADING")):
        response = await api(REPORT, {"id": uid, "progress": progress, "stage": stage}, token)
        assert not response.errors, response.errors
        assert response.data["reportProgress"] == {
            "status": "RENDERING", "progress": progress, "stage": stage
        }  # fmt: skip
    shown = await rest.ok("GET", f"/jobs/{uid}/status", token)
    assert shown["state"] == "render:postrender"

    wrong = await api(REPORT, {"id": uid, "progress": 60, "stage": "BAKING"}, token)
    assert wrong.codes == ["BAD_USER_INPUT"]
    await jobs.complete(uid)
    response = await api(EVENTS, {"id": uid}, accounts["user"].token)
    job = response.data["job"]
    assert job["stage"] is None
    steps = [
        (edge["node"]["kind"], edge["node"]["job"]["stage"]) for edge in job["events"]["edges"]
    ]
    assert steps[-5:] == [
        ("PROGRESS", "RENDERING"),
        ("PROGRESS", "POSTRENDER"),
        ("PROGRESS", "UPLOADING"),
        ("PROGRESS", "UPLOADING"),
        ("STATUS_CHANGED", None),
    ]


async def test_a_stage_is_reported_only_while_rendering(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job = await jobs.submit_job(accounts["user"].actor, valid_submission())
    response = await api(
        REPORT, {"id": job.id, "progress": 0, "stage": "SETUP"}, accounts["admin"].token
    )
    assert response.codes == ["INVALID_TRANSITION"]
    assert (await stored(job.id)).stage is None


async def test_unknown_endpoints_and_methods_are_answered_in_json(
    rest: Rest, accounts: dict[str, Account]
) -> None:
    token = accounts["user"].token
    for path in ("/nope", "/jobs/%2e%2e%2fhealth", "/jobs/a/b/c"):
        response = await rest.http.get("/api/v1" + path, headers={"nexrender-secret": token})
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == "NOT_FOUND"
    response = await rest.http.patch("/api/v1/jobs", headers={"nexrender-secret": token})
    assert response.status_code == 405 and response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


@pytest.mark.parametrize("priority", [2**63, -(2**63), 1e308, 2**53])
async def test_a_priority_a_javascript_client_cannot_read_back_is_refused(
    rest: Rest, accounts: dict[str, Account], priority: float
) -> None:
    response = await rest.call(
        "POST", "/jobs", accounts["user"].token, nexrender_job(priority=priority)
    )
    assert response.status_code == 400, response.text
    assert response.json()["fields"][0]["field"] == "priority"
    assert await Job.all().count() == 0
