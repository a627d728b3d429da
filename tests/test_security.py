"""The security suite of issue 9: an attacker with each role against a real uvicorn server.

Every read path, every mutation, both websocket protocols, the nested-query attack, forged
cursors, a revoked token mid-stream, the connection and subscription caps, schema hints and the
hostile Nexrender configs. Each case asserts the coded answer, that no server error or stack
trace comes back, and that nothing changed in the database.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from graphql import parse
from websockets.exceptions import ConnectionClosed

from app.factory import create_app
from app.settings import Settings
from domain.status import JobStatus
from domain.users import hash_token as sha
from gql.cost import DEFAULT_MAX_COST, query_cost
from models import Job, JobLogLine, User
from models.base import new_id
from service import jobs, settings, users
from testkit.sql_log import SqlStatement, capture_sql
from tests.conftest import Account, make_account
from tests.factories import insert_job
from tests.graphql_client import GraphQLClient, GraphQLResponse
from tests.live_server import (
    LEGACY_WS,
    TRANSPORT_WS,
    LiveServer,
    Socket,
    closed_within,
    open_socket,
    serve,
)

S = JobStatus
ROLES = ("admin", "user", "other", "worker", "worker2")
PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
WITHIN = 1.0  # seconds: how soon a revocation must reach an open websocket
QUIET = 0.15  # seconds of silence that end a drain of a websocket
WAIT = 10.0
CRASH_MARKERS = ("Traceback", 'File "', "INTERNAL_SERVER_ERROR", "Internal server error")

# Whose identity (email, name) each role may ever be shown: its own, and for a job's owner the
# workers rendering its jobs. A worker never sees who submitted a job.
SHOWN = {
    "admin": set(ROLES),
    "user": {"user", "worker", "worker2"},
    "other": {"other", "worker"},
    "worker": {"worker"},
    "worker2": {"worker2"},
}


# --- the world the attacker lives in ---------------------------------------------------------


@dataclass(frozen=True)
class World:
    ids: dict[str, str]  # name -> job id
    owner: dict[str, str]  # name -> role of the owner
    status: dict[str, JobStatus]
    holder: dict[str, str | None]  # name -> role of the worker holding it (or that held it)

    def visible(self, role: str) -> set[str]:
        if role == "admin":
            return set(self.ids)
        if role.startswith("worker"):
            return {
                name
                for name in self.ids
                if self.status[name] is S.QUEUED or self.holder[name] == role
            }
        return {name for name in self.ids if self.owner[name] == role}

    def hidden(self, role: str) -> set[str]:
        return set(self.ids) - self.visible(role)

    def names_of(self, ids: list[str]) -> list[str]:
        by_id = {job_id: name for name, job_id in self.ids.items()}
        return [by_id[job_id] for job_id in ids]


# name: (owner, status, holder); no name is a prefix of another, so a text search is exact.
JOBS: dict[str, tuple[str, JobStatus, str | None]] = {
    "user_queued": ("user", S.QUEUED, None),
    "user_rendering_by_w1": ("user", S.RENDERING, "worker"),
    "user_rendering_by_w2": ("user", S.RENDERING, "worker2"),
    "user_pending": ("user", S.PENDING, None),
    "user_failed": ("user", S.FAILED, None),
    "other_queued": ("other", S.QUEUED, None),
    "other_done_by_w1": ("other", S.COMPLETED, "worker"),
    "other_failed": ("other", S.FAILED, None),
    "other_cancelled": ("other", S.CANCELLED, None),
}


def project_of(name: str) -> str:
    return f"{name}-project"


def secret_of(name: str) -> str:
    return f"secret of {name}"


@pytest.fixture
async def world(accounts: dict[str, Account]) -> World:
    now = datetime.now(UTC)
    ids = {}
    for name, (owner, status, holder) in JOBS.items():
        fields: dict[str, Any] = {"status": status, "sequence": 1, "project_name": project_of(name)}
        if holder is not None:
            fields["worker_id"] = accounts[holder].id
        if status is S.RENDERING:
            # Claimed twice (one hand-back): lease 1 is an older claim's.
            fields.update(lease=2, attempts=1, started_at=now, heartbeat_at=now, progress=10)
        elif status is S.COMPLETED:
            fields.update(lease=1, attempts=1, started_at=now, completed_at=now, progress=100)
        elif status is S.FAILED:
            fields.update(error_message=f"failed: {secret_of(name)}", completed_at=now)
        elif status is S.CANCELLED:
            fields.update(cancelled_reason="stopped", completed_at=now)
        job = await insert_job(await User.get(id=accounts[owner].id), **fields)
        await jobs.append_log(job.id, [secret_of(name)])
        ids[name] = job.id
    return World(
        ids=ids,
        owner={name: spec[0] for name, spec in JOBS.items()},
        status={name: spec[1] for name, spec in JOBS.items()},
        holder={name: spec[2] for name, spec in JOBS.items()},
    )


# --- what must hold after every attack -------------------------------------------------------


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    return {
        "jobs": await Job.all().order_by("id").values(),
        "users": await User.all().order_by("id").values(),
        "job_log_lines": await JobLogLine.all().order_by("id").values(),
    }


@dataclass
class Unchanged:
    before: dict[str, list[dict[str, Any]]]

    async def check(self, what: object = "") -> None:
        after = await snapshot()
        for table, rows in self.before.items():
            assert after[table] == rows, f"{table} changed by {what}"


async def unchanged() -> Unchanged:
    return Unchanged(await snapshot())


def texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def assert_no_crash(body: object) -> None:
    for text in texts(body):
        for marker in CRASH_MARKERS:
            assert marker not in text, (marker, body)


def codes_of(errors: list[dict[str, Any]]) -> list[str | None]:
    return [(error.get("extensions") or {}).get("code") for error in errors]


def assert_refused(response: GraphQLResponse, code: str, *fields: str) -> dict[str, Any]:
    """One coded error and no data of the field; BAD_USER_INPUT names exactly `fields`."""
    assert response.status == 200, response.body
    assert_no_crash(response.body)
    assert response.codes == [code], response.body
    data = response.data
    assert data is None or not any(data.values()), response.body
    error = response.errors[0]
    if code == "BAD_USER_INPUT":
        named = [item["field"] for item in error["extensions"]["fields"]]
        assert named == list(fields), response.body
    return error


def assert_answered(response: GraphQLResponse) -> Any:
    assert response.status == 200, response.body
    assert not response.errors, response.body
    assert_no_crash(response.body)
    return response.data


def identities(value: object) -> Iterator[dict[str, Any]]:
    """Every User object in a result (each query here asks `email` of every user it reads)."""
    if isinstance(value, dict):
        if "email" in value:
            yield value
        for item in value.values():
            yield from identities(item)
    elif isinstance(value, list):
        for item in value:
            yield from identities(item)


def assert_reveals_nothing(
    body: object, world: World, role: str, accounts: dict[str, Account]
) -> None:
    """Nothing of a job the role may not see (its id, name, log, error) and nobody it may not
    know appears anywhere in the answer."""
    assert_no_crash(body)
    text = json.dumps(body, ensure_ascii=False)
    for job_id in world.ids.values():  # a refusal may name the id the attacker sent
        text = text.replace(f"Job {job_id} was not found.", "")
    for name in world.hidden(role):
        assert world.ids[name] not in text, (name, body)
        assert project_of(name) not in text, (name, body)
        assert secret_of(name) not in text, (name, body)
    for who, account in accounts.items():
        if who not in SHOWN[role]:
            assert account.email not in text, (who, body)
    for person in identities(body):
        shown = {accounts[who].email for who in SHOWN[role]}
        assert person["email"] in shown, (role, person)
        if "name" in person:
            assert person["name"] == person["email"].split("@")[0], person


# --- websockets ------------------------------------------------------------------------------


async def drain(socket: Socket, quiet: float = QUIET) -> list[dict[str, Any]]:
    """Every message until `quiet` seconds pass without one (or the socket closes)."""
    messages = []
    try:
        while True:
            messages.append(await socket.receive(timeout=quiet))
    except (TimeoutError, ConnectionClosed):
        return messages


async def read_until(
    socket: Socket, done: Callable[[dict[str, Any]], bool], timeout: float = WAIT
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not messages or not done(messages[-1]):
            messages.append(await socket.receive())
    return messages


async def answers_then_quiet(socket: Socket, op_ids: set[str]) -> list[dict[str, Any]]:
    """Every message until each operation of `op_ids` has its answer (however long a busy
    machine takes), then until `QUIET` seconds pass without one."""
    answered: set[str] = set()

    def all_answered(message: dict[str, Any]) -> bool:
        if message.get("type") in {"next", "data", "error"}:
            answered.add(message.get("id", ""))
        return answered >= op_ids

    return await read_until(socket, all_answered) + await drain(socket)


def results(messages: list[dict[str, Any]], op_id: str) -> list[dict[str, Any]]:
    """The result payloads of one operation (`next` or, legacy, `data`)."""
    return [
        message["payload"]
        for message in messages
        if message.get("id") == op_id and message["type"] in {"next", "data"}
    ]


def event_job(message: dict[str, Any]) -> tuple[str | None, str | None]:
    """(id, status) of the job of a jobEvents result; (None, None) for anything else."""
    if message.get("type") not in {"next", "data"}:
        return None, None
    event = ((message.get("payload") or {}).get("data") or {}).get("jobEvents") or {}
    job = event.get("job") or {}
    return job.get("id"), job.get("status")


def error_payloads(message: dict[str, Any]) -> list[dict[str, Any]]:
    payload = message.get("payload")
    return payload if isinstance(payload, list) else [payload] if payload else []


async def wait_for_subscribers(server: LiveServer, count: int) -> None:
    """Until exactly `count` subscriptions are on the server's bus (ended ones gone)."""
    bus = server.app.state.bus
    async with asyncio.timeout(WAIT):
        while bus.subscriber_count != count:
            await asyncio.sleep(0.01)


# --- operations ------------------------------------------------------------------------------

USER_FIELDS = "id email name"
JOB_FIELDS = (
    f"id status projectName errorMessage user {{ {USER_FIELDS} }} worker {{ {USER_FIELDS} }}"
)
JOB_BY_ID = f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} logs nexrenderConfig }} }}"
JOBS_PAGE = f"""
query($filter: JobFilter, $order: JobOrder, $first: Int, $after: String, $last: Int,
      $before: String) {{
  jobs(filter: $filter, orderBy: $order, first: $first, after: $after, last: $last,
       before: $before) {{
    totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ cursor node {{ {JOB_FIELDS} }} }}
  }}
}}
"""
QUEUE = f"{{ queue(first: 100) {{ {JOB_FIELDS} queuePosition }} }}"
STATS = "{ jobStats { pending validating queued rendering completed failed cancelled total } }"
ME = f"""
{{ me {{ {USER_FIELDS} jobs(first: 100) {{ totalCount edges {{ node {{ {JOB_FIELDS} }} }} }} }} }}
"""
USERS = f"{{ users {{ {USER_FIELDS} }} }}"
NESTED_READ = f"""
{{ jobs(first: 10) {{ edges {{ node {{ id
    user {{ {USER_FIELDS}
      jobs(first: 10) {{ edges {{ node {{ id user {{ {USER_FIELDS} }} }} }} }} }}
    worker {{ {USER_FIELDS} jobs(first: 10) {{ edges {{ node {{ id user {{ {USER_FIELDS} }}
      worker {{ {USER_FIELDS} }} }} }} }} }} }} }} }} }}
"""
JOB_UPDATED = f"""
subscription($id: ID!) {{
  jobUpdated(id: $id) {{ kind sequence job {{ {JOB_FIELDS} logs }} }}
}}
"""
JOB_EVENTS = f"""
subscription($filter: JobEventFilter) {{
  jobEvents(filter: $filter) {{ kind job {{ {JOB_FIELDS} logs }} }}
}}
"""
SUBMIT = """
mutation($input: SubmitJobInput!) { submitJob(input: $input) { id status errorMessage } }
"""
CLAIM = "mutation { claimJob { id status } }"
SET_PRIORITY = "mutation($id: ID!) { setJobPriority(id: $id, priority: 9) { id priority } }"
DEACTIVATE = "mutation($id: ID!) { deactivateUser(userId: $id) { isActive } }"
ROTATE = "mutation($id: ID!) { rotateToken(userId: $id) { token } }"
VALID_INPUT = {
    "projectName": "Promo",
    "outputName": "promo.mp4",
    "templatePath": "/mnt/renders/promo.aep",
    "dataPath": "/mnt/renders/promo.json",
    "outputPath": "/mnt/renders/promo.mp4",
}


async def submit(http: GraphQLClient, token: str, **overrides: Any) -> dict[str, Any]:
    data = assert_answered(await http(SUBMIT, {"input": {**VALID_INPUT, **overrides}}, token))
    return data["submitJob"]


async def post_raw(
    http: GraphQLClient, body: str | bytes, token: str | None = None
) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await http.http.post("/graphql", content=body, headers=headers)
    return response.status_code, response.text


# === every read path, each role ===============================================================


@pytest.mark.parametrize("role", ROLES)
async def test_job_by_id_answers_a_hidden_job_as_null(
    role: str, http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    token = accounts[role].token
    state = await unchanged()
    seen = set()
    for name, job_id in world.ids.items():
        data = assert_answered(await http(JOB_BY_ID, {"id": job_id}, token))
        assert_reveals_nothing(data, world, role, accounts)
        if data["job"] is not None:
            assert data["job"]["id"] == job_id
            assert secret_of(name) in data["job"]["logs"]
            seen.add(name)
            if role.startswith("worker"):
                assert data["job"]["user"] is None, "a worker never sees who submitted a job"
    assert seen == world.visible(role)
    # Made-up, malformed and hostile ids are as absent as a hidden job.
    for job_id in (new_id(), "", "x" * 100_000, "' OR '1'='1", "../../etc/passwd", "\u202e"):
        data = assert_answered(await http(JOB_BY_ID, {"id": job_id}, token))
        assert data == {"job": None}
    await state.check("job(id)")


def filters(accounts: dict[str, Account], role: str) -> list[tuple[dict[str, Any], Callable]]:
    """(filter, which job names it keeps) for filters the role may use."""
    every = [
        ({}, lambda name, world: True),
        ({"status": list(S.__members__)}, lambda name, world: True),
        ({"search": "other"}, lambda name, world: name.startswith("other")),
        ({"search": "USER_"}, lambda name, world: name.startswith("user")),
        ({"search": "%"}, lambda name, world: False),
        ({"search": "_"}, lambda name, world: True),
        ({"search": "' OR 1=1 --"}, lambda name, world: False),
        ({"createdAfter": "2000-01-01T00:00:00+00:00"}, lambda name, world: True),
        ({"createdBefore": "2000-01-01T00:00:00+00:00"}, lambda name, world: False),
        ({"createdBefore": "2999-01-01T00:00:00+00:00"}, lambda name, world: True),
        ({"userId": accounts[role].id}, lambda name, world: world.owner[name] == role),
    ]
    for status in S:
        every.append(({"status": [status.value]}, lambda n, w, s=status: w.status[n] is s))
    return every


@pytest.mark.parametrize("role", ROLES)
async def test_jobs_under_every_filter_answers_only_visible_jobs(
    role: str, http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    token = accounts[role].token
    state = await unchanged()
    visible = world.visible(role)
    for index, (job_filter, keeps) in enumerate(filters(accounts, role)):
        for order in ("NEWEST_FIRST", "OLDEST_FIRST")[: 2 if index == 0 else 1]:
            variables = {"filter": job_filter, "order": order, "first": 100}
            data = assert_answered(await http(JOBS_PAGE, variables, token))
            assert_reveals_nothing(data, world, role, accounts)
            page = data["jobs"]
            names = world.names_of([edge["node"]["id"] for edge in page["edges"]])
            expected = {name for name in visible if keeps(name, world)}
            assert set(names) == expected, (job_filter, order)
            assert page["totalCount"] == len(expected), (job_filter, order)

    # Another user's jobs: FORBIDDEN for everyone but an admin, whether that user exists or not.
    for target in ("admin", "user", "other", "worker"):
        if target == role:
            continue
        variables = {"filter": {"userId": accounts[target].id}, "first": 100}
        response = await http(JOBS_PAGE, variables, token)
        if role == "admin":
            names = world.names_of([e["node"]["id"] for e in response.data["jobs"]["edges"]])
            assert set(names) == {n for n in world.ids if world.owner[n] == target}
            continue
        refused = assert_refused(response, "FORBIDDEN")
        made_up = await http(JOBS_PAGE, {"filter": {"userId": new_id()}}, token)
        assert assert_refused(made_up, "FORBIDDEN")["message"] == refused["message"]

    # Walking every page, forwards and backwards, finds the visible jobs and nothing more.
    for size_arg, cursor_arg, cursor_of in (
        ("first", "after", "endCursor"),
        ("last", "before", "startCursor"),
    ):
        walked: list[str] = []
        cursor = None
        for _ in range(len(world.ids) + 1):
            variables = {size_arg: 2, cursor_arg: cursor}
            data = assert_answered(await http(JOBS_PAGE, variables, token))
            assert_reveals_nothing(data, world, role, accounts)
            walked += [edge["node"]["id"] for edge in data["jobs"]["edges"]]
            info = data["jobs"]["pageInfo"]
            cursor = info[cursor_of]
            if not info["hasNextPage" if size_arg == "first" else "hasPreviousPage"]:
                break
        assert sorted(world.names_of(walked)) == sorted(visible), size_arg
    await state.check("jobs")


@pytest.mark.parametrize("role", ROLES)
async def test_queue_stats_me_and_users_answer_only_what_the_role_may_see(
    role: str, http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    token = accounts[role].token
    state = await unchanged()
    visible = world.visible(role)

    queue = assert_answered(await http(QUEUE, token=token))
    assert_reveals_nothing(queue, world, role, accounts)
    queued = {name for name in visible if world.status[name] is S.QUEUED}
    assert set(world.names_of([job["id"] for job in queue["queue"]])) == queued

    stats = assert_answered(await http(STATS, token=token))["jobStats"]
    for status in S:
        expected = sum(1 for name in visible if world.status[name] is status)
        assert stats[status.value.lower()] == expected, status
    assert stats["total"] == len(visible)

    me = assert_answered(await http(ME, token=token))
    assert_reveals_nothing(me, world, role, accounts)
    own = {name for name in world.ids if world.owner[name] == role}
    assert me["me"]["email"] == accounts[role].email
    assert set(world.names_of([e["node"]["id"] for e in me["me"]["jobs"]["edges"]])) == own
    assert me["me"]["jobs"]["totalCount"] == len(own)
    # On a user's own list a userId filter is no way into another user's jobs.
    for target in ROLES:
        spying = f"""query($id: ID) {{ me {{ jobs(first: 100, filter: {{userId: $id}}) {{
            edges {{ node {{ {JOB_FIELDS} }} }} }} }} }}"""
        data = assert_answered(await http(spying, {"id": accounts[target].id}, token))
        assert_reveals_nothing(data, world, role, accounts)
        found = world.names_of([e["node"]["id"] for e in data["me"]["jobs"]["edges"]])
        assert set(found) <= own, target

    listed = await http(USERS, token=token)
    if role == "admin":
        emails = {person["email"] for person in assert_answered(listed)["users"]}
        assert emails == {account.email for account in accounts.values()}
    else:
        assert assert_refused(listed, "FORBIDDEN")["path"] == ["users"]
    await state.check("queue, jobStats, me, users")


@pytest.mark.parametrize("role", ROLES)
async def test_nested_reads_reach_no_other_users_jobs_and_no_owner(
    role: str, http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    state = await unchanged()
    response = await http(NESTED_READ, token=accounts[role].token)
    assert response.status == 200
    assert_reveals_nothing(response.body, world, role, accounts)
    jobs_seen = world.names_of([edge["node"]["id"] for edge in response.data["jobs"]["edges"]])
    assert set(jobs_seen) == world.visible(role)
    for error in response.errors:
        # A user reaching a worker's list of jobs through Job.worker: that list is not theirs.
        assert role in ("user", "other"), error
        assert error["extensions"]["code"] == "FORBIDDEN", error
        assert error["path"][-2:] == ["worker", "jobs"], error
    for edge in response.data["jobs"]["edges"]:
        node = edge["node"]
        if role.startswith("worker"):
            assert node["user"] is None
        elif node["user"] is not None:
            inner = node["user"]["jobs"]["edges"]
            assert {world.names_of([e["node"]["id"]])[0] for e in inner} <= world.visible(role)
    await state.check("nested reads")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("role", ROLES)
async def test_subscriptions_deliver_only_visible_jobs(
    role: str,
    protocol: str,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    world: World,
) -> None:
    state = await unchanged()
    visible = world.visible(role)
    spied = "other" if role != "other" else "user"
    async with open_socket(live, protocol) as socket:
        assert (await socket.init(accounts[role].token))["type"] == "connection_ack"
        names = list(world.ids)
        for index, name in enumerate(names):
            await socket.subscribe(JOB_UPDATED, {"id": world.ids[name]}, f"u{index}")
        await socket.subscribe(JOB_EVENTS, {"filter": None}, "events")
        await socket.subscribe(JOB_EVENTS, {"filter": {"userId": accounts[spied].id}}, "spy")
        awaited = {f"u{index}" for index in range(len(names))}
        if role != "admin":
            awaited.add("spy")  # refused at once; an admin's spy just waits for events
        first: list[dict[str, Any]] = []
        async with asyncio.timeout(WAIT):
            while not awaited <= {m.get("id") for m in first if m["type"] in {"next", "data"}}:
                first.append(await socket.receive())
        for index, name in enumerate(names):
            answers = results(first, f"u{index}")
            assert len(answers) == 1, (name, first)
            if name in visible:
                assert answers[0]["data"]["jobUpdated"]["kind"] == "SNAPSHOT"
            else:
                assert codes_of(answers[0]["errors"]) == ["NOT_FOUND"], answers
                assert answers[0]["data"] is None
        spy = results(first, "spy")
        if role == "admin":
            assert spy == []
        else:
            assert [codes_of(answer["errors"]) for answer in spy] == [["FORBIDDEN"]], first
        assert_reveals_nothing(first, world, role, accounts)
        await state.check("subscribing")

        # Every unfinished job changes once; then markers that each role sees end the wait.
        live_ones = sum(
            1 for name in visible if world.status[name] in (S.QUEUED, S.RENDERING, S.PENDING)
        )
        await wait_for_subscribers(live, live_ones + 1 + (role == "admin"))
        changed = set()
        for name, job_id in world.ids.items():
            if world.status[name] in (S.QUEUED, S.RENDERING, S.PENDING):
                assert_answered(await http(SET_PRIORITY, {"id": job_id}, accounts["admin"].token))
                changed.add(name)
        own_marker = await submit(http, accounts["user"].token, projectName="marker-user")
        other_marker = await submit(http, accounts["other"].token, projectName="marker-other")
        last = own_marker["id"] if role == "user" else other_marker["id"]

        later = await read_until(socket, lambda m: event_job(m) == (last, "QUEUED"))
        later += await drain(socket)
    markers = {own_marker["id"], other_marker["id"]}
    assert_reveals_nothing(later, world, role, accounts)
    events = [p["data"]["jobEvents"]["job"]["id"] for p in results(later, "events")]
    assert set(world.names_of([i for i in events if i not in markers])) == visible & changed
    for index, name in enumerate(names):
        updates = results(later, f"u{index}")
        expected = 1 if name in visible & changed else 0
        assert len(updates) == expected, (name, updates)
        if updates:
            assert updates[0]["data"]["jobUpdated"]["kind"] == "PRIORITY_CHANGED"
    if role == "admin":
        spy_ids = [p["data"]["jobEvents"]["job"]["id"] for p in results(later, "spy")]
        assert other_marker["id"] in spy_ids and own_marker["id"] not in spy_ids


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_worker_loses_sight_of_a_job_another_worker_claimed(
    protocol: str,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    world: World,
) -> None:
    queued = [world.ids["user_queued"], world.ids["other_queued"]]
    async with open_socket(live, protocol) as socket:
        assert (await socket.init(accounts["worker"].token))["type"] == "connection_ack"
        for job_id in queued:
            await socket.subscribe(JOB_UPDATED, {"id": job_id}, job_id)
        await socket.subscribe(JOB_EVENTS, {"filter": None}, "events")
        snapshots = await drain(socket)
        assert all(results(snapshots, job_id) for job_id in queued), snapshots
        await wait_for_subscribers(live, 3)  # two jobUpdated and jobEvents

        worker2 = accounts["worker2"].token
        claimed = assert_answered(await http(CLAIM, token=worker2))["claimJob"]["id"]
        report = """mutation($id: ID!, $l: String) {
            reportProgress(id: $id, progress: 40, log: $l) { id } }"""
        assert_answered(await http(report, {"id": claimed, "l": "worker2's secret"}, worker2))
        marker = await submit(http, accounts["user"].token, projectName="marker")

        later = await read_until(socket, lambda m: event_job(m) == (marker["id"], "QUEUED"))
        later += await drain(socket)
    text = json.dumps(later)
    assert "worker2's secret" not in text and accounts["worker2"].email not in text
    lost = results(later, claimed)
    assert [codes_of(payload.get("errors") or []) for payload in lost] == [["NOT_FOUND"]], later
    assert claimed not in [p["data"]["jobEvents"]["job"]["id"] for p in results(later, "events")]
    assert_no_crash(later)


# === every mutation, each role not entitled to it =============================================

REPORTS = {
    "reportProgress": 'reportProgress(id: $id, progress: 90, log: "attack", lease: $lease)',
    "heartbeat": "heartbeat(id: $id, lease: $lease)",
    "appendJobLog": 'appendJobLog(id: $id, lines: ["attack"], lease: $lease)',
    "completeJob": "completeJob(id: $id, lease: $lease)",
    "failJob": 'failJob(id: $id, error: "attack", lease: $lease)',
    "requeueJob": "requeueJob(id: $id, lease: $lease)",
}
MANAGES = {
    "cancelJob": 'cancelJob(id: $id, reason: "attack")',
    "retryJob": "retryJob(id: $id)",
    "setJobPriority": "setJobPriority(id: $id, priority: 10)",
}
# (attacker, target job, code, lease)
MANAGE_CASES = [
    ("other", "user_queued", "NOT_FOUND", None),
    ("worker", "user_queued", "FORBIDDEN", None),
    ("worker2", "user_queued", "FORBIDDEN", None),
    ("worker", "user_pending", "NOT_FOUND", None),
    ("worker", "user_rendering_by_w1", "FORBIDDEN", None),
    ("worker2", "user_rendering_by_w1", "NOT_FOUND", None),
    ("other", "user_rendering_by_w1", "NOT_FOUND", None),
    ("other", "user_failed", "NOT_FOUND", None),
    ("worker", "user_failed", "NOT_FOUND", None),
    ("user", "other_failed", "NOT_FOUND", None),
    ("user", "other_cancelled", "NOT_FOUND", None),
    ("worker", "other_done_by_w1", "FORBIDDEN", None),
    ("worker2", "other_done_by_w1", "NOT_FOUND", None),
]
REPORT_CASES = [
    ("user", "user_rendering_by_w1", "FORBIDDEN", None),
    ("other", "user_rendering_by_w1", "NOT_FOUND", None),
    ("worker2", "user_rendering_by_w1", "NOT_FOUND", None),
    ("worker", "user_rendering_by_w2", "NOT_FOUND", None),
    ("worker2", "user_queued", "FORBIDDEN", None),
    ("user", "user_queued", "FORBIDDEN", None),
    ("other", "user_queued", "NOT_FOUND", None),
    ("worker2", "other_done_by_w1", "NOT_FOUND", None),
    ("user", "user_pending", "FORBIDDEN", None),
    ("worker", "other_failed", "NOT_FOUND", None),
    # The holder itself, under a lease that is not the job's: a fenced-off node.
    ("worker", "user_rendering_by_w1", "CONFLICT", 1),
    ("worker", "user_rendering_by_w1", "CONFLICT", 3),
    ("worker", "user_rendering_by_w1", "BAD_USER_INPUT", 0),
    ("worker", "user_rendering_by_w1", "BAD_USER_INPUT", -1),
]
ACCOUNT_MUTATIONS = {
    "createUser": 'mutation { createUser(email: "mallory@example.com", role: ADMIN) { token } }',
    "rotateToken": "mutation($id: ID!) { rotateToken(userId: $id) { token user { id } } }",
    "deactivateUser": "mutation($id: ID!) { deactivateUser(userId: $id) { isActive } }",
}
# Each family of mutations, in one test each.
MUTATIONS = {
    "-".join(names): names
    for names in (
        list(MANAGES),  # the owner's (or an admin's)
        list(REPORTS),  # the holding worker's (or an admin's)
        ["submitJob", "claimJob"],  # users' and workers'
        list(ACCOUNT_MUTATIONS),  # an admin's
    )
}


def job_mutation(name: str) -> str:
    if name in MANAGES:
        return f"mutation($id: ID!) {{ {MANAGES[name]} {{ id status progress priority }} }}"
    return f"mutation($id: ID!, $lease: Int) {{ {REPORTS[name]} {{ id status progress }} }}"


async def attack(
    http: GraphQLClient, query: str, variables: dict[str, Any], token: str, code: str
) -> dict[str, Any]:
    """The request is refused with `code` (BAD_USER_INPUT: naming the lease), and changes
    nothing."""
    state = await unchanged()
    fields = ("lease",) if code == "BAD_USER_INPUT" else ()
    response = await http(query, variables, token)
    try:
        error = assert_refused(response, code, *fields)
    except AssertionError as failure:
        who = next(u["email"] for u in await User.all().values() if u["token_hash"] == sha(token))
        raise AssertionError(f"{who}: {query} {variables} -> {response.body}") from failure
    await state.check((query, variables))
    return error


@pytest.mark.parametrize("family", MUTATIONS)
async def test_a_mutation_by_a_role_not_entitled_to_it_is_refused_and_changes_nothing(
    family: str, http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    for mutation in MUTATIONS[family]:
        await attack_with_every_role(mutation, http, accounts, world)


async def attack_with_every_role(
    mutation: str, http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    if mutation in MANAGES or mutation in REPORTS:
        query = job_mutation(mutation)
        for role, target, code, lease in MANAGE_CASES if mutation in MANAGES else REPORT_CASES:
            variables = {"id": world.ids[target], "lease": lease}
            error = await attack(http, query, variables, accounts[role].token, code)
            assert_reveals_nothing(error, world, role, accounts)
            if code == "NOT_FOUND":
                # Indistinguishable from a job that does not exist.
                made_up = new_id()
                unknown = await attack(
                    http, query, {"id": made_up, "lease": lease}, accounts[role].token, code
                )
                assert unknown["message"].replace(made_up, "?") == error["message"].replace(
                    world.ids[target], "?"
                )
    elif mutation == "submitJob":
        for role in ("worker", "worker2"):
            await attack(http, SUBMIT, {"input": VALID_INPUT}, accounts[role].token, "FORBIDDEN")
    elif mutation == "claimJob":
        for role in ("admin", "user", "other"):
            await attack(http, CLAIM, {}, accounts[role].token, "FORBIDDEN")
    else:
        for role in ("user", "other", "worker", "worker2"):
            for target in ("admin", role, "other" if role != "other" else "user"):
                variables = {"id": accounts[target].id}
                query = ACCOUNT_MUTATIONS[mutation]
                await attack(http, query, variables, accounts[role].token, "FORBIDDEN")
        # And every token still works.
        for account in accounts.values():
            assert_answered(await http("{ me { id } }", token=account.token))


async def revoked_tokens(accounts: dict[str, Account]) -> dict[str, str]:
    """Tokens that once worked: a deactivated user's, and a rotated-away one."""
    gone = await make_account("gone@example.com", "admin")
    await users.deactivate_user(gone.id)
    rotated = await make_account("rotated@example.com", "admin")
    await users.rotate_token(rotated.id)
    return {"deactivated": gone.token, "rotated away": rotated.token}


async def test_every_operation_without_a_valid_token_is_unauthenticated(
    http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    target = world.ids["user_queued"]
    operations: list[tuple[str, dict[str, Any]]] = [
        (JOB_BY_ID, {"id": target}),
        (JOBS_PAGE, {}),
        (QUEUE, {}),
        (STATS, {}),
        ("{ me { id } }", {}),
        (USERS, {}),
        (SUBMIT, {"input": VALID_INPUT}),
        (CLAIM, {}),
        *[(job_mutation(name), {"id": target}) for name in [*MANAGES, *REPORTS]],
        *[(query, {"id": accounts["user"].id}) for query in ACCOUNT_MUTATIONS.values()],
    ]
    tokens: dict[str, str | None] = {
        "none": None,
        "made up": "rt_" + "A" * 43,
        "not even a token": "' OR 1=1 --",
        **await revoked_tokens(accounts),
    }
    state = await unchanged()
    for kind, token in tokens.items():
        for query, variables in operations:
            response = await http(query, variables, token)
            assert_refused(response, "UNAUTHENTICATED")
            assert not any(accounts["user"].email in text for text in texts(response.body)), kind
    # Another scheme than Bearer is no token either.
    for header in (f"Basic {accounts['admin'].token}", accounts["admin"].token, "Bearer"):
        raw = await http.http.post(
            "/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": header}
        )
        assert_refused(GraphQLResponse(raw.status_code, raw.json()), "UNAUTHENTICATED")
    await state.check("requests without a valid token")


# === queries and mutations over a websocket ====================================================


async def test_queries_and_mutations_over_a_websocket_change_nothing_and_leak_nothing(
    live: LiveServer, accounts: dict[str, Account], world: World
) -> None:
    """graphql-transport-ws carries queries and mutations too: the same rules hold there. The
    legacy protocol refuses them outright."""
    hidden = world.ids["user_queued"]
    operations = [
        (f'{{ job(id: "{hidden}") {{ id logs user {{ email }} }} }}', "q"),
        (f'mutation {{ cancelJob(id: "{hidden}", reason: "x") {{ id }} }}', "cancel"),
        (f'mutation {{ reportProgress(id: "{hidden}", progress: 5) {{ id }} }}', "report"),
        ("mutation { claimJob { id } }", "claim"),
        (USERS, "users"),
        (f'mutation {{ deactivateUser(userId: "{accounts["user"].id}") {{ id }} }}', "deact"),
        ('{ jobs(after: "junk") { totalCount } }', "cursor"),
    ]
    state = await unchanged()
    for protocol in PROTOCOLS:
        async with open_socket(live, protocol) as socket:
            assert (await socket.init(accounts["other"].token))["type"] == "connection_ack"
            for query, op_id in operations:
                await socket.subscribe(query, {}, op_id)
            messages = await answers_then_quiet(socket, {op_id for _, op_id in operations})
        assert_reveals_nothing(messages, world, "other", accounts)
        for _query, op_id in operations:
            answers = [m for m in messages if m.get("id") == op_id and m["type"] != "complete"]
            assert len(answers) == 1, (protocol, op_id, messages)
            answer = answers[0]
            if answer["type"] == "error":  # the legacy protocol: no queries, no mutations
                assert protocol == LEGACY_WS, answer
                continue
            data = answer["payload"].get("data")
            assert data is None or not any(data.values()), answer
            if op_id != "q":
                assert answer["payload"].get("errors"), answer
    await state.check("operations over websockets")


async def test_refusals_over_graphql_transport_ws_are_coded_like_over_http(
    live: LiveServer, accounts: dict[str, Account], world: World
) -> None:
    hidden = world.ids["user_queued"]
    expected = {
        "users": ("{ users { id } }", "FORBIDDEN"),
        "cancel": (f'mutation {{ cancelJob(id: "{hidden}", reason: "x") {{ id }} }}', "NOT_FOUND"),
        "claim": ("mutation { claimJob { id } }", "FORBIDDEN"),
        "first": ("{ jobs(first: -1) { totalCount } }", "BAD_USER_INPUT"),
        "cursor": ('{ jobs(after: "junk") { totalCount } }', "BAD_USER_INPUT"),
        "misspelled": ("{ jbs }", "GRAPHQL_VALIDATION_FAILED"),
        "overflow": (
            'mutation { submitJob(input: {projectName: "P", outputName: "p.mp4", '
            'templatePath: "/mnt/renders/p.aep", dataPath: "/mnt/renders/p.json", '
            f'outputPath: "/mnt/renders/p.mp4", autoCancelAt: "{FAR_FUTURE}"}}) {{ id }} }}',
            "BAD_USER_INPUT",
        ),
    }
    async with open_socket(live, TRANSPORT_WS) as socket:
        assert (await socket.init(accounts["other"].token))["type"] == "connection_ack"
        for op_id, (query, _code) in expected.items():
            await socket.subscribe(query, {}, op_id)
        messages = await drain(socket)
    for op_id, (_query, code) in expected.items():
        answer = next(m for m in messages if m.get("id") == op_id and m["type"] != "complete")
        errors = answer["payload"]["errors"] if answer["type"] == "next" else answer["payload"]
        assert_no_crash(errors)  # over HTTP an unexpected error is masked; here it is raw text
        assert "out of range" not in json.dumps(errors), (op_id, answer)
        assert codes_of(errors) == [code], (op_id, answer)


# === forged and tampered cursors ==============================================================


def b64(raw: str | bytes) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode()


FORGED_CURSORS = {
    "junk": "!!!not base64!!!",
    "empty": "",
    "base64 junk": b64("hello, world"),
    "json object": b64('{"created_at": "2024-01-01T00:00:00+00:00", "id": "x"}'),
    "one element": b64('["2024-01-01T00:00:00+00:00"]'),
    "three elements": b64('["2024-01-01T00:00:00+00:00", "abc", "def"]'),
    "naive time": b64('["2024-01-01T00:00:00", "abcdefghijklmnopqrstuvwxy"]'),
    "not a time": b64('["yesterday", "abcdefghijklmnopqrstuvwxy"]'),
    "sql in the id": b64("[\"2024-01-01T00:00:00+00:00\", \"x' OR '1'='1\"]"),
    "numbers": b64("[1, 2]"),
    "non-UTF-8": b64(b"\xff\xfe\xfa\x80"),
    "non-UTF-8 inside": b64(b'["2024-01-01T00:00:00+00:00", "\xff\xfe"]'),
    "lone surrogate": "\ud800",
    "NUL": "\x00",
    "huge": "A" * 600_000,
    "huge id": b64(json.dumps(["2024-01-01T00:00:00+00:00", "a" * 200_000])),
}


async def test_a_forged_cursor_is_bad_user_input_naming_it(
    http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    token = accounts["user"].token
    state = await unchanged()
    me_jobs = "query($c: String) { me { jobs(%s: $c) { totalCount } } }"
    attempts = [
        ("query($c: String) { jobs(after: $c) { totalCount } }", "after"),
        ("query($c: String) { jobs(before: $c) { totalCount } }", "before"),
        ("query($c: String) { jobs(last: 3, before: $c) { edges { cursor } } }", "before"),
        (me_jobs % "after", "after"),
        (me_jobs % "before", "before"),
    ]
    for case, cursor in FORGED_CURSORS.items():
        for query, field in attempts:
            # Sent as written (json.dumps escapes a lone surrogate as \ud800).
            body = json.dumps({"query": query, "variables": {"c": cursor}})
            status, text = await post_raw(http, body, token)
            response = GraphQLResponse(status, json.loads(text))
            try:
                error = assert_refused(response, "BAD_USER_INPUT", field)
            except AssertionError as failure:
                raise AssertionError(f"cursor {case!r} in {query}") from failure
            assert len(error["message"]) < 1000, "the refusal does not echo a huge cursor"
        await state.check(case)


async def test_negative_and_contradictory_page_arguments_are_bad_user_input(
    http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    token = accounts["user"].token
    cursor = assert_answered(await http(JOBS_PAGE, {"first": 1}, token))["jobs"]["pageInfo"]
    cursor = cursor["endCursor"]
    cases = [
        ("{ jobs(first: -1) { totalCount } }", ["first"]),
        ("{ jobs(last: -1) { totalCount } }", ["last"]),
        ("{ jobs(first: -1, last: -1) { totalCount } }", ["last", "first", "last"]),
        ("{ jobs(first: 1, last: 1) { totalCount } }", ["last"]),
        (f'{{ jobs(after: "{cursor}", before: "{cursor}") {{ totalCount }} }}', ["before"]),
        ("{ queue(first: -1) { id } }", ["first"]),
        ("{ me { jobs(first: -1) { totalCount } } }", ["first"]),
        ("{ me { jobs(last: -5) { totalCount } } }", ["last"]),
    ]
    state = await unchanged()
    for query, fields in cases:
        assert_refused(await http(query, token=token), "BAD_USER_INPUT", *fields)
    # Past 32 bits a page size is not an Int: the variable is named.
    response = await http("query($n: Int) { jobs(first: $n) { totalCount } }", {"n": 2**40}, token)
    assert_refused(response, "BAD_USER_INPUT", "n")
    await state.check("page arguments")


async def test_a_cursor_naming_another_users_job_reveals_nothing(
    http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    """A keyset cursor is a position: one the admin was given for another user's job, replayed by
    a user, pages through the user's own jobs only, exactly like a made-up id at that place."""
    admin_page = await http(JOBS_PAGE, {"first": 100}, accounts["admin"].token)
    cursors = {
        world.names_of([edge["node"]["id"]])[0]: edge["cursor"]
        for edge in assert_answered(admin_page)["jobs"]["edges"]
    }
    state = await unchanged()
    for role in ("user", "worker2"):
        for name in world.hidden(role):
            created_at, _job_id = json.loads(base64.urlsafe_b64decode(cursors[name]))
            made_up = b64(json.dumps([created_at, "z" * 25], separators=(",", ":")))
            for arguments in ({"first": 100, "after": None}, {"last": 100, "before": None}):
                key = "after" if "after" in arguments else "before"
                pages = []
                for cursor in (cursors[name], made_up):
                    variables = {**arguments, key: cursor}
                    data = assert_answered(await http(JOBS_PAGE, variables, accounts[role].token))
                    assert_reveals_nothing(data, world, role, accounts)
                    pages.append([edge["node"]["id"] for edge in data["jobs"]["edges"]])
                assert set(world.names_of(pages[0])) <= world.visible(role)
                assert pages[0] == pages[1], "no oracle: the same page as a made-up id there"
    await state.check("replayed cursors")


# === the nested-query attack ===================================================================

NESTED = """
{ jobs(first: 100) { edges { node { queuePosition
    user { jobs(first: 100) { edges { node { queuePosition } } } } } } } }
"""
ONE_NESTED = (
    "jobs(first: 100) { edges { node { queuePosition "
    "user { jobs(first: 100) { edges { node { queuePosition } } } } } } }"
)
ALIASED = "{ " + " ".join(f"a{i}: {ONE_NESTED}" for i in range(20)) + " }"
FRAGMENTED = """
query { jobs(first: 100) { ...Page } }
fragment Page on JobConnection { edges { node { queuePosition user { ...Owner } } } }
fragment Owner on User { jobs(first: 100) { edges { node { queuePosition logs } } } }
"""
BY_VARIABLE = """
query($n: Int) { jobs(first: $n) { edges { node { user { jobs(first: $n) {
  edges { node { id } } } } } } } }
"""
SUBSCRIBED = """
subscription { jobEvents { job { user { jobs(first: 100) { edges { node {
  user { jobs(first: 100) { edges { node { id } } } } } } } } } } }
"""


def job_statements(seen: list[SqlStatement]) -> list[str]:
    """Statements that touch the jobs table (or their logs), from tortoise's own log."""
    return [
        statement.text
        for statement in seen
        if '"jobs"' in statement.text or "job_log_lines" in statement.text
    ]


@pytest.fixture
def job_reads() -> Iterator[list[SqlStatement]]:
    with capture_sql() as seen:
        yield seen


@pytest.fixture
async def quiet_server(db: str) -> AsyncIterator[LiveServer]:
    """A real server without its sweeper, so that any read of a job is the request's own."""
    app = create_app(Settings(database_url=db), manage_database=False, run_duties=False)
    async with serve(app) as server:
        yield server


async def test_the_nested_query_is_refused_as_too_costly_before_anything_is_read(
    quiet_server: LiveServer,
    accounts: dict[str, Account],
    world: World,
    job_reads: list[SqlStatement],
) -> None:
    state = await unchanged()
    async with httpx.AsyncClient(base_url=quiet_server.http_url, timeout=10) as client:
        http = GraphQLClient(client)
        for role in (*ROLES, None):
            token = accounts[role].token if role else None
            for query, variables in (
                (NESTED, {}),
                (ALIASED, {}),
                (FRAGMENTED, {}),
                (BY_VARIABLE, {"n": 100}),
            ):
                job_reads.clear()
                response = await http(query, variables, token)
                error = assert_refused(response, "QUERY_TOO_COSTLY")
                assert response.data is None
                cost = query_cost(parse(query), variables, None)
                assert error["extensions"]["cost"] == cost > DEFAULT_MAX_COST
                assert error["extensions"]["limit"] == DEFAULT_MAX_COST
                assert job_statements(job_reads) == [], (role, query, job_statements(job_reads))
        # 21 aliases: over the alias limit too; refused, still without reading a job.
        job_reads.clear()
        too_many = "{ " + " ".join(f"a{i}: {ONE_NESTED}" for i in range(21)) + " }"
        response = await http(too_many, token=accounts["user"].token)
        assert response.data is None and response.errors
        assert set(response.codes) <= {"QUERY_TOO_COSTLY", "GRAPHQL_VALIDATION_FAILED"}
        assert_no_crash(response.body)
        assert job_statements(job_reads) == []
        # The capture does see a request that runs: a cheap one reads the jobs table.
        assert_answered(
            await http("{ jobs(first: 1) { totalCount } }", token=accounts["user"].token)
        )
        assert job_statements(job_reads), "the statement capture saw nothing"

    for protocol in PROTOCOLS:
        async with open_socket(quiet_server, protocol) as socket:
            assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
            job_reads.clear()
            await socket.subscribe(SUBSCRIBED, {}, "costly")
            refusal = await socket.receive()
            assert refusal["type"] == "error" and refusal["id"] == "costly", refusal
            [error] = error_payloads(refusal)
            assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
            assert error["extensions"]["cost"] == query_cost(parse(SUBSCRIBED), {}, None)
            assert error["extensions"]["limit"] == DEFAULT_MAX_COST
            assert quiet_server.app.state.bus.subscriber_count == 0
            assert job_statements(job_reads) == []
    await state.check("costly queries")


# === revocation reaches open websockets =======================================================


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("revocation", ["deactivateUser", "rotateToken"])
async def test_a_revoked_token_is_cut_off_mid_stream_and_refused_everywhere(
    protocol: str,
    revocation: str,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    world: World,
) -> None:
    user, admin = accounts["user"], accounts["admin"]
    old = user.token
    jobs_before = await Job.all().order_by("id").values()
    users_before = {row["id"]: row for row in await User.all().values()}
    async with open_socket(live, protocol) as socket, open_socket(live, protocol) as bystander:
        assert (await socket.init(old))["type"] == "connection_ack"
        await socket.subscribe(JOB_UPDATED, {"id": world.ids["user_queued"]}, "job")
        await socket.subscribe(JOB_EVENTS, {"filter": None}, "events")
        assert (await socket.next_payload())["data"]["jobUpdated"]["kind"] == "SNAPSHOT"
        assert (await bystander.init(accounts["other"].token))["type"] == "connection_ack"
        await bystander.subscribe(JOB_EVENTS, {"filter": None}, "events")
        await wait_for_subscribers(live, 3)

        query = DEACTIVATE if revocation == "deactivateUser" else ROTATE
        answer = assert_answered(await http(query, {"id": user.id}, admin.token))
        started = time.monotonic()
        code, reason = await closed_within(socket, WITHIN)
        assert time.monotonic() - started < WITHIN
        assert code == 4403 and "revoked" in reason, (code, reason)
        # The bystander's connection is untouched.
        marker = await submit(http, accounts["other"].token, projectName="still-here")
        await read_until(bystander, lambda m: event_job(m) == (marker["id"], "QUEUED"))

    # A new connection with the old token is refused, in connection_init or in the headers.
    for headers, payload_token in (({}, old), ({"Authorization": f"Bearer {old}"}, None)):
        async with open_socket(live, protocol, headers=headers) as socket:
            payload = {"Authorization": f"Bearer {payload_token}"} if payload_token else {}
            await socket.send({"type": "connection_init", "payload": payload})
            if protocol == LEGACY_WS:
                message = await socket.receive()
                assert message["type"] == "connection_error", message
                await closed_within(socket, 5)
            else:
                code, _ = await closed_within(socket, 5)
                assert code == 4403
    # So is an HTTP request, read or write.
    assert_refused(await http("{ me { id } }", token=old), "UNAUTHENTICATED")
    cancel = job_mutation("cancelJob")
    assert_refused(await http(cancel, {"id": world.ids["user_queued"]}, old), "UNAUTHENTICATED")

    jobs_after = await Job.all().order_by("id").values()
    assert [row for row in jobs_after if row["id"] != marker["id"]] == jobs_before
    users_after = {row["id"]: row for row in await User.all().values()}
    for user_id, row in users_after.items():
        if user_id != user.id:
            assert row == users_before[user_id]
    revoked = users_after[user.id]
    if revocation == "deactivateUser":
        assert revoked["is_active"] is False
        assert revoked["token_hash"] == users_before[user.id]["token_hash"]
    else:
        assert revoked["is_active"] is True
        assert revoked["token_hash"] != users_before[user.id]["token_hash"]
        new_token = answer["rotateToken"]["token"]
        assert_answered(await http("{ me { id } }", token=new_token))
        async with open_socket(live, protocol) as socket:
            assert (await socket.init(new_token))["type"] == "connection_ack"


async def test_a_second_connection_init_cannot_outlive_the_revocation_of_its_token(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account], world: World
) -> None:
    user, other, admin = accounts["user"], accounts["other"], accounts["admin"]
    async with open_socket(live, LEGACY_WS) as socket:
        assert (await socket.init(other.token))["type"] == "connection_ack"
        await socket.send(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {user.token}"}}
        )
        answer = await drain(socket)
        if answer and answer[0]["type"] == "connection_ack":
            await socket.subscribe(JOB_UPDATED, {"id": world.ids["user_queued"]}, "job")
            await socket.next_payload()
            assert_answered(await http(DEACTIVATE, {"id": user.id}, admin.token))
            code, _ = await closed_within(socket, WITHIN)
            assert code == 4403
        else:  # refusing a second connection_init is as good
            assert [m["type"] for m in answer] in ([], ["connection_error"]), answer


# === connection and subscription caps ==========================================================


async def init_raw(socket: Socket, token: str) -> None:
    await socket.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_websockets_past_a_users_share_are_refused(
    protocol: str, db: str, accounts: dict[str, Account]
) -> None:
    app = create_app(Settings(database_url=db, max_connections_per_user=2), manage_database=False)
    state = await unchanged()
    user = accounts["user"].token
    async with (
        serve(app) as server,
        open_socket(server, protocol) as _anonymous,  # it never authenticates: no share
        open_socket(server, protocol) as first,
        open_socket(server, protocol) as second,
    ):
        assert (await first.init(user))["type"] == "connection_ack"
        assert (await second.init(user))["type"] == "connection_ack"
        for _ in range(3):  # each further attempt, again and again
            async with open_socket(server, protocol) as third:
                await init_raw(third, user)
                if protocol == LEGACY_WS:
                    refusal = await third.receive()
                    assert refusal["type"] == "connection_error", refusal
                    assert "RENDERTRACK_MAX_CONNECTIONS_PER_USER" in str(refusal["payload"])
                    await closed_within(third, 5)
                else:
                    code, _ = await closed_within(third, 5)
                    assert code == 4403
        # Nor does a token in the upgrade request's headers get round the share.
        headers = {"Authorization": f"Bearer {user}"}
        async with open_socket(server, protocol, headers=headers) as fourth:
            await fourth.send({"type": "connection_init", "payload": {}})
            if protocol == LEGACY_WS:
                assert (await fourth.receive())["type"] == "connection_error"
                await closed_within(fourth, 5)
            else:
                assert (await closed_within(fourth, 5))[0] == 4403
        # Another user is not held back, and the first two still work.
        async with open_socket(server, protocol) as other:
            assert (await other.init(accounts["other"].token))["type"] == "connection_ack"
        await first.subscribe(JOB_EVENTS, {"filter": None}, "events")
        await second.subscribe(JOB_EVENTS, {"filter": None}, "events")
        await wait_for_subscribers(server, 2)
    await state.check("connections past the share")


@pytest.mark.parametrize(
    "protocol",
    [
        TRANSPORT_WS,
        LEGACY_WS,
    ],
)
async def test_a_refused_connection_init_is_closed_with_4403_saying_why(
    protocol: str, db: str, accounts: dict[str, Account]
) -> None:
    app = create_app(Settings(database_url=db, max_connections_per_user=1), manage_database=False)
    async with (
        serve(app) as server,
        open_socket(server, protocol) as first,
        open_socket(server, protocol) as second,
    ):
        assert (await first.init(accounts["user"].token))["type"] == "connection_ack"
        await init_raw(second, accounts["user"].token)
        if protocol == LEGACY_WS:
            assert (await second.receive())["type"] == "connection_error"
        code, reason = await closed_within(second, 5)
        assert code == 4403
        if protocol == TRANSPORT_WS:
            assert "connections" in reason, reason


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscriptions_past_the_cap_of_a_connection_are_refused(
    protocol: str, db: str, accounts: dict[str, Account]
) -> None:
    settings_ = Settings(database_url=db, max_subscriptions_per_connection=2)
    state = await unchanged()
    async with (
        serve(create_app(settings_, manage_database=False)) as server,
        open_socket(server, protocol) as socket,
    ):
        assert (await socket.init(accounts["user"].token))["type"] == "connection_ack"
        await socket.subscribe(JOB_EVENTS, {"filter": None}, "1")
        await socket.subscribe(JOB_EVENTS, {"filter": None}, "2")
        for op_id in ("3", "4"):
            await socket.subscribe(JOB_EVENTS, {"filter": None}, op_id)
            refusal = await socket.receive()
            assert refusal["type"] == "error" and refusal["id"] == op_id, refusal
            [error] = error_payloads(refusal)
            assert error["extensions"] == {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": 2}
            assert_no_crash(refusal)
        await wait_for_subscribers(server, 2)
        assert server.app.state.bus.subscriber_count == 2
        # Ending one gives its place back.
        stop = "complete" if protocol == TRANSPORT_WS else "stop"
        await socket.send({"id": "1", "type": stop})
        async with asyncio.timeout(WAIT):
            while server.app.state.bus.subscriber_count > 1:
                await asyncio.sleep(0.01)
        await socket.subscribe(JOB_EVENTS, {"filter": None}, "5")
        await wait_for_subscribers(server, 2)
        assert all(message["type"] == "complete" for message in await drain(socket))
    await state.check("subscriptions past the cap")


# === no schema hints without a valid token =====================================================

MISSPELLED = [
    ("{ jbs }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("{ me { emial } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("mutation { submitJb }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("{ jobs(fliter: {}) { totalCount } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("query($x: JobStatu) { jobs(filter: {status: [$x]}) { totalCount } }", None, None),
    ("{ ... on Qery { me { id } } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("{ jobs(filter: {status: [QUEUD]}) { totalCount } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("{ jobs(filter: {staus: [QUEUED]}) { totalCount } }", None, "GRAPHQL_VALIDATION_FAILED"),
    (
        "query($f: JobFilter) { jobs(filter: $f) { totalCount } }",
        {"f": {"status": ["QUEUD"]}},
        "BAD_USER_INPUT",
    ),
    ("subscription { jobUpdatd(id: 1) { kind } }", None, "GRAPHQL_VALIDATION_FAILED"),
]
SCHEMA_WORDS = ("Did you mean", "'Query'", "'Job'", "'JobStatus'", "'JobFilter'", "'Mutation'")


async def test_no_schema_hints_without_a_valid_token(
    http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    tokens = {"anonymous": None, "made-up token": "rt_" + "B" * 43}
    tokens.update(await revoked_tokens(accounts))
    state = await unchanged()
    for kind, token in tokens.items():
        await assert_no_hints(http, accounts, kind, token)
    await state.check("malformed requests")


async def assert_no_hints(
    http: GraphQLClient, accounts: dict[str, Account], kind: str, token: str | None
) -> None:
    for query, variables, code in MISSPELLED:
        response = await http(query, variables, token)
        assert response.status == 200 and response.data is None, response.body
        assert response.errors and len(set(response.codes)) == 1, response.body
        if code is not None:
            assert response.codes[0] == code, response.body
        assert_no_crash(response.body)
        for text in texts(response.body):
            for word in SCHEMA_WORDS:
                assert word not in text, (kind, query, text)
        # The same mistake with a valid token does get graphql-core's help: the test bites.
        helped = await http(query, variables, accounts["user"].token)
        assert any("Did you mean" in error["message"] for error in helped.errors), helped.body
    assert (await http("{ jbs }", token=token)).errors[0]["message"] == (
        "Cannot query field 'jbs' on type '<hidden>'."
    )
    for introspection in ("{ __schema { types { name } } }", '{ __type(name: "Job") { name } }'):
        response = await http(introspection, token=token)
        assert response.data is None and "UNAUTHENTICATED" in response.codes, response.body
        got = await http.http.get(
            "/graphql", params={"query": introspection}, headers={"Accept": "application/json"}
        )
        assert "UNAUTHENTICATED" in GraphQLResponse(got.status_code, got.json()).codes


# === hostile Nexrender configs ==================================================================

ROOTS = ("/mnt/renders",)
TEMPLATE = {"src": "file:///mnt/renders/promo.aep", "composition": "main"}
CONFIG = "nexrender_config"


def action(stage: str, **step: Any) -> dict[str, Any]:
    return {"template": TEMPLATE, "actions": {stage: [step]}}


HOSTILE_CONFIGS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "dot-slash module": (
        action("postrender", module="./evil.js"),
        [f"{CONFIG}.actions.postrender[0].module"],
    ),
    "absolute module": (
        action("prerender", module="/tmp/x.js"),
        [f"{CONFIG}.actions.prerender[0].module"],
    ),
    "node builtin": (
        action("predownload", module="child_process"),
        [f"{CONFIG}.actions.predownload[0].module"],
    ),
    "upload provider path": (
        action("postrender", module="@nexrender/action-upload", provider="/tmp/evil.js"),
        [f"{CONFIG}.actions.postrender[0].provider"],
    ),
    "template outside the roots": (
        {"template": {**TEMPLATE, "src": "/etc/evil.aep"}},
        [f"{CONFIG}.template.src"],
    ),
    "file uri outside the roots": (
        {"template": {**TEMPLATE, "src": "file:///home/attacker/evil.aep"}},
        [f"{CONFIG}.template.src"],
    ),
    "file uri with ..": (
        {"template": {**TEMPLATE, "src": "file:///mnt/renders/../../etc/evil.aep"}},
        [f"{CONFIG}.template.src"],
    ),
    "file uri with encoded ..": (
        {"template": {**TEMPLATE, "src": "file:///mnt/renders/%2e%2e/%2E%2E/etc/evil.aep"}},
        [f"{CONFIG}.template.src"],
    ),
    "javascript uri": (
        {"template": {**TEMPLATE, "src": "javascript:alert(1)//evil.aep"}},
        [f"{CONFIG}.template.src"],
    ),
    "data uri": (
        {
            "template": TEMPLATE,
            "assets": [{"type": "image", "src": "data:image/png;base64,AAAA", "layerName": "a"}],
        },
        [f"{CONFIG}.assets[0].src"],
    ),
    "everything at once": (
        {
            "template": {**TEMPLATE, "src": "javascript:alert(1)//evil.aep"},
            "assets": [
                {"type": "image", "src": "data:image/png;base64,AAAA", "layerName": "a"},
                {"type": "script", "src": "file:///mnt/renders/../../tmp/evil.jsx"},
            ],
            "actions": {
                "predownload": [{"module": "child_process"}],
                "postrender": [
                    {"module": "./evil.js"},
                    {"module": "@nexrender/action-upload", "provider": "/tmp/evil.js"},
                    {"module": "@nexrender/action-copy", "output": "/etc/cron.d/evil"},
                ],
            },
        },
        [
            f"{CONFIG}.template.src",
            f"{CONFIG}.assets[0].src",
            f"{CONFIG}.assets[1].src",
            f"{CONFIG}.actions.predownload[0].module",
            f"{CONFIG}.actions.postrender[0].module",
            f"{CONFIG}.actions.postrender[1].provider",
            f"{CONFIG}.actions.postrender[2].output",
        ],
    ),
}


@pytest.fixture
def allowed_roots() -> Iterator[tuple[str, ...]]:
    """RENDERTRACK_ALLOWED_ROOTS for the running server's use cases, restored after."""
    previous = settings.configure(dataclasses.replace(settings.current(), allowed_roots=ROOTS))
    yield ROOTS
    settings.configure(previous)


async def assert_nobody_can_render(
    http: GraphQLClient, accounts: dict[str, Account], job_id: str
) -> None:
    for worker in ("worker", "worker2"):
        token = accounts[worker].token
        assert assert_answered(await http(CLAIM, token=token)) == {"claimJob": None}
        assert assert_answered(await http(JOB_BY_ID, {"id": job_id}, token)) == {"job": None}
        assert assert_answered(await http(QUEUE, token=token)) == {"queue": []}


@pytest.mark.parametrize("case", HOSTILE_CONFIGS, ids=list(HOSTILE_CONFIGS))
async def test_a_hostile_nexrender_config_fails_naming_every_problem_and_is_never_rendered(
    case: str,
    http: GraphQLClient,
    accounts: dict[str, Account],
    allowed_roots: tuple[str, ...],
) -> None:
    config, fields = HOSTILE_CONFIGS[case]
    before = await snapshot()
    owner = accounts["user"].token
    job = await submit(http, owner, nexrenderConfig=config)
    assert job["status"] == "FAILED", job
    lines = job["errorMessage"].splitlines()
    assert lines[0] == "Validation failed:"
    assert [line.removeprefix("- ").split(":")[0] for line in lines[1:]] == fields, lines

    # One FAILED job of its owner, its own log lines, and nothing else written.
    after = await snapshot()
    assert after["users"] == before["users"]
    [written] = [row for row in after["jobs"] if row["id"] == job["id"]]
    assert written["status"] is S.FAILED and written["user_id"] == accounts["user"].id
    assert written["worker_id"] is None and written["attempts"] == 0
    assert [row for row in after["jobs"] if row["id"] != job["id"]] == before["jobs"]
    new_lines = [row for row in after["job_log_lines"] if row not in before["job_log_lines"]]
    assert all(row["job_id"] == job["id"] for row in new_lines)

    await assert_nobody_can_render(http, accounts, job["id"])
    # Retried by its owner, it is validated again and fails again: still nothing to render.
    retry = "mutation($id: ID!) { retryJob(id: $id) { status errorMessage } }"
    again = assert_answered(await http(retry, {"id": job["id"]}, owner))["retryJob"]
    assert again["status"] == "FAILED" and again["errorMessage"] == job["errorMessage"]
    await assert_nobody_can_render(http, accounts, job["id"])


HOSTILE_TOP_LEVEL = {
    "javascript template": ({"templatePath": "javascript:alert(1)//x.aep"}, ["template_path"]),
    "data output": ({"outputPath": "data:video/mp4;base64,AAAA"}, ["output_path"]),
    "file uri with ..": (
        {"dataPath": "file:///mnt/renders/../../etc/passwd.json"},
        ["data_path"],
    ),
    "outside the roots": ({"templatePath": "/etc/evil.aep"}, ["template_path"]),
}


async def test_hostile_top_level_paths_fail_the_same_way(
    http: GraphQLClient, accounts: dict[str, Account], allowed_roots: tuple[str, ...]
) -> None:
    for case, (overrides, fields) in HOSTILE_TOP_LEVEL.items():
        job = await submit(http, accounts["user"].token, **overrides)
        assert job["status"] == "FAILED", (case, job)
        lines = job["errorMessage"].splitlines()[1:]
        assert [line.removeprefix("- ").split(":")[0] for line in lines] == fields, (case, lines)
        await assert_nobody_can_render(http, accounts, job["id"])


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"src": "/mnt/renders/x.aep"}
    for _ in range(depth):
        value = {"a": value}
    return value


MALFORMED_CONFIGS: dict[str, tuple[object, list[str]]] = {
    "a module path instead of an object": ("./evil.js", ["nexrenderConfig"]),
    "a list": (["child_process"], ["nexrenderConfig"]),
    "a NUL byte": (
        {"template": {**TEMPLATE, "src": "/mnt/renders/x.aep\u0000.js"}},
        ["nexrenderConfig.template.src"],
    ),
    "over 256 KiB": ({"template": TEMPLATE, "pad": "x" * 300_000}, ["nexrenderConfig"]),
}


async def test_a_malformed_nexrender_config_is_bad_user_input_writing_nothing(
    http: GraphQLClient, accounts: dict[str, Account], allowed_roots: tuple[str, ...]
) -> None:
    for case, (config, fields) in MALFORMED_CONFIGS.items():
        state = await unchanged()
        response = await http(
            SUBMIT, {"input": {**VALID_INPUT, "nexrenderConfig": config}}, accounts["user"].token
        )
        assert_refused(response, "BAD_USER_INPUT", *fields)
        await state.check(case)
    assert assert_answered(await http(CLAIM, token=accounts["worker"].token)) == {"claimJob": None}


async def test_a_deeply_nested_nexrender_config_is_refused_or_failed_not_a_crash(
    http: GraphQLClient, accounts: dict[str, Account], allowed_roots: tuple[str, ...]
) -> None:
    for depth in (100, 300, 600):
        before = await snapshot()
        response = await http(
            SUBMIT,
            {"input": {**VALID_INPUT, "nexrenderConfig": nested(depth)}},
            accounts["user"].token,
        )
        assert response.status == 200
        assert_no_crash(response.body)
        if response.errors:
            assert_refused(response, "BAD_USER_INPUT", "nexrenderConfig")
            assert await snapshot() == before
        else:
            assert response.data["submitJob"]["status"] == "FAILED", depth
    assert assert_answered(await http(CLAIM, token=accounts["worker"].token)) == {"claimJob": None}


# === hostile values that must not become server errors =========================================


async def test_a_deeply_nested_request_body_is_a_bad_request_not_a_server_error(
    http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    state = await unchanged()
    deep = "[" * 100_000 + "]" * 100_000
    bodies = [
        deep,
        '{"query": "{ me { id } }", "variables": {"a": ' + deep + "}}",
    ]
    for body in bodies:
        status, text = await post_raw(http, body, accounts["user"].token)
        assert status == 400, (status, text[:200])
        assert_no_crash(text)
    await state.check("deep bodies")


async def test_a_body_that_is_not_utf8_is_a_bad_request(
    http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    state = await unchanged()
    body = b'{"query": "{ jobs(after: $c) { totalCount } }", "variables": {"c": "\xff\xfe"}}'
    status, text = await post_raw(http, body, accounts["user"].token)
    assert status == 400, text
    assert_no_crash(text)
    await state.check("a body that is not UTF-8")


FAR_FUTURE = "9999-12-31T23:59:59-14:00"  # a valid DateTime whose UTC is past year 9999


async def test_an_overflowing_auto_cancel_time_is_bad_user_input(
    http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    state = await unchanged()
    response = await http(
        SUBMIT, {"input": {**VALID_INPUT, "autoCancelAt": FAR_FUTURE}}, accounts["user"].token
    )
    assert_refused(response, "BAD_USER_INPUT", "autoCancelAt")
    await state.check("autoCancelAt")


async def test_extreme_created_filters_are_answered_not_crashed(
    http: GraphQLClient, accounts: dict[str, Account], world: World, backend: str
) -> None:
    state = await unchanged()
    token = accounts["user"].token
    for bound in ("createdAfter", "createdBefore"):
        for moment in ("0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59+14:00"):
            response = await http(JOBS_PAGE, {"filter": {bound: moment}}, token)
            assert_answered(response)
    await state.check("extreme filters")


async def test_an_overflowing_created_filter_is_answered_or_bad_user_input(
    http: GraphQLClient,
    accounts: dict[str, Account],
    world: World,
) -> None:
    state = await unchanged()
    token = accounts["user"].token
    for bound in ("createdAfter", "createdBefore"):
        for moment in (FAR_FUTURE, "0001-01-01T00:00:00+14:00"):
            response = await http(JOBS_PAGE, {"filter": {bound: moment}}, token)
            if response.errors:
                assert_refused(response, "BAD_USER_INPUT", bound)
            else:
                assert_answered(response)
    await state.check("overflowing filters")
