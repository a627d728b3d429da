"""The real Nexrender packages from npm against rendertrack's REST API (/api/v1).

- `@nexrender/api` 1.62.0 driven step by step as worker 1.63 reports (pickup, `started`,
  `render:dorender` 25/50/75, `finished` or `error`, `queued` on shutdown) while a GraphQL
  `jobUpdated` subscriber sees each step; a job cancelled over GraphQL refuses the client's next
  report; removeJob cancels; refusals reach the client as JSON.
- `@nexrender/worker` 1.8.16 with `@nexrender/core` 1.63.3, unmodified, rendering with a stand-in
  `aerender` (tests/js/nexrender/aerender.mjs): a job rendered to COMPLETED, a failed render, a
  job cancelled mid-render, two workers sharing a queue; on a server with a short stall timeout,
  a worker killed mid-render whose job another worker finishes, a render longer than the stall
  timeout taken back by its worker's `finished`, and a worker that lost its job to another and
  must go on working.
- `@nexrender/types` 1.62.0's `validate()` on every job JSON the API answered in those runs
  (every request and answer of the real clients is recorded: tests/js/nexrender/packages.cjs).

The packages are installed once with npm into .cache/npm-nexrender (git-ignored), pinned by
tests/js/nexrender/package.json. Under CI=true a missing node or npm, or a failed install, is a
failure, not a skip. ../shared/NEXRENDER.md says how the workers behave and why the shim exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from app.factory import create_app
from app.settings import Settings
from testkit import npm
from tests import nexrender_types
from tests.conftest import Account
from tests.databases import only_in_pass
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer, Socket, open_socket, serve

pytestmark = [
    pytest.mark.slow,
    only_in_pass(
        "sqlite",
        "a client of the API runs the same on both databases (test_compat_api.py and "
        "test_queue_api.py cover the API on PostgreSQL)",
    ),
]

REPO = Path(__file__).resolve().parent.parent
JS = REPO / "tests" / "js" / "nexrender"
WAIT = 15.0  # one step of a client, one event
RENDER_WAIT = 30.0  # a whole render by a real worker
STALL_SECONDS = 2.0
NO_MESSAGE = "the worker reported an error without a message"  # README: an `error` of `{}`
AERENDER_ERROR = "After Effects error: missing footage 'logo.png' in comp 'main'"

JOB_UPDATED = """
subscription($id: ID!) {
  jobUpdated(id: $id) { kind previousStatus job { id status progress stage errorMessage } }
}
"""
JOB = """
query($id: ID!) {
  job(id: $id) {
    status progress stage errorMessage cancelledReason attempts logs worker { email }
    events(first: 100) { edges { node { kind duty previousStatus job { status } } } }
  }
}
"""
CANCEL = """
mutation($id: ID!, $reason: String!) { cancelJob(id: $id, reason: $reason) { status } }
"""


# --- the packages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packages:
    node: str
    folder: Path  # holds node_modules with the pinned packages

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "NEXRENDER_DIR": str(self.folder), **extra}


@pytest.fixture(scope="session")
def nexrender() -> Packages:
    """The pinned @nexrender packages, installed once into .cache/npm-nexrender (no package of
    the tree needs an install script: checked, none has one)."""
    node, folder = npm.installed(
        JS / "package.json", "npm-nexrender", "the Nexrender packages test", "--ignore-scripts"
    )
    return Packages(node=node, folder=folder)


def test_the_pinned_packages_are_the_ones_that_run(nexrender: Packages) -> None:
    result = subprocess.run(
        [nexrender.node, str(JS / "versions.cjs")],
        env=nexrender.env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "@nexrender/api": "1.62.0",
        "@nexrender/types": "1.62.0",
        "@nexrender/worker": "1.8.16",
        "@nexrender/core": "1.63.3",
        "worker -> @nexrender/core": "1.63.3",
        "worker -> @nexrender/api": "1.62.0",
        "core -> @nexrender/types": "1.62.0",
        "api -> @nexrender/types": "1.62.0",
        "api -> node-fetch": "2.7.0",
    }


# --- what went over the wire -------------------------------------------------------------------


@dataclass
class Wire:
    """Every request the real clients of one test sent and the answer each got, one JSON line
    per exchange in <folder>/<who>.jsonl (written by tests/js/nexrender/packages.cjs)."""

    folder: Path

    def file(self, who: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        return str(self.folder / f"{who}.jsonl")

    def exchanges(self, who: str | None = None) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            return []
        files = sorted(self.folder.glob("*.jsonl" if who is None else f"{who}.jsonl"))
        return [json.loads(line) for path in files for line in path.read_text().splitlines()]

    def puts(self, who: str) -> list[tuple[str, Any, int | None]]:
        """(state sent, error sent, answer's status) of each PUT `who` sent."""
        sent = []
        for exchange in self.exchanges(who):
            if exchange["method"] == "PUT":
                body = json.loads(exchange["request"])
                sent.append((body.get("state"), body.get("error"), exchange.get("status")))
        return sent

    def answered(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(job JSON, status views) in every successful answer: a list's items, one job, a
        pickup's job (not its `{}` when there is none)."""
        jobs: list[dict[str, Any]] = []
        views: list[dict[str, Any]] = []
        for exchange in self.exchanges():
            if exchange.get("status") != 200:
                continue
            body = json.loads(exchange["response"])
            path = urlsplit(exchange["url"]).path
            for item in body if isinstance(body, list) else [body]:
                if item != {}:
                    (views if path.endswith("/status") else jobs).append(item)
        return jobs, views


@pytest.fixture
def wire(tmp_path: Path) -> Wire:
    return Wire(tmp_path / "wire")


async def check_answers(nexrender: Packages, wire: Wire) -> None:
    """@nexrender/types' validate() accepts every job JSON the API answered in this test, and
    every status view has getRenderingStatus()'s keys."""
    jobs, views = wire.answered()
    assert jobs, "the clients received no job JSON"
    process = await asyncio.create_subprocess_exec(
        nexrender.node,
        str(JS / "validate.mjs"),
        env=nexrender.env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(jobs).encode()), WAIT)
    assert process.returncode == 0, err.decode()
    verdicts = [json.loads(line) for line in out.decode().splitlines()]
    assert len(verdicts) == len(jobs)
    refused = [(verdict, jobs[verdict["index"]]) for verdict in verdicts if not verdict["ok"]]
    assert not refused, refused
    for view in views:
        nexrender_types.validate_status(view)


# --- @nexrender/api, one call at a time ----------------------------------------------------------


class Refused(Exception):
    """The client's promise rejected: the message is the answer's body (or why it failed)."""


class NexrenderApi:
    """tests/js/nexrender/api.mjs: named @nexrender/api clients, one call at a time; the
    events of the emitters that addJob returns."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen_events: list[dict[str, Any]] = []
        self.calls = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            message = json.loads(raw)
            if "event" in message:
                self.events.put_nowait(message)
            elif (answer := self.answers.pop(message["id"], None)) is not None:
                answer.set_result(message)
        for answer in self.answers.values():
            answer.set_exception(AssertionError("api.mjs exited before answering"))

    async def _call(self, client: str, op: str, *args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.calls += 1
        answer = asyncio.get_running_loop().create_future()
        self.answers[self.calls] = answer
        command = {"id": self.calls, "client": client, "op": op, "args": list(args)}
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        try:
            return await asyncio.wait_for(answer, WAIT)
        except TimeoutError:
            pytest.fail(f"@nexrender/api's {op} did not settle within {WAIT}s")

    async def call(self, client: str, op: str, *args: Any) -> Any:
        """What the client's promise resolved to; Refused when it rejected."""
        answer = await self._call(client, op, *args)
        if not answer["ok"]:
            raise Refused(answer["error"])
        return answer["result"]

    async def refusal(self, client: str, op: str, *args: Any) -> dict[str, Any]:
        """The client's promise must reject: the JSON body of the server's refusal."""
        answer = await self._call(client, op, *args)
        assert not answer["ok"], f"{op} {args} was accepted: {answer['result']}"
        return json.loads(answer["error"])

    async def client(self, name: str, secret: str) -> None:
        await self.call(name, "client", secret)

    async def event(self, name: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next event `name` of an addJob emitter (the ones before it are kept)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                self.seen_events.append(event)
                if event["event"] == name:
                    return event


@contextlib.asynccontextmanager
async def nexrender_api(
    nexrender: Packages, server: LiveServer, wire: Wire, **clients: str
) -> AsyncIterator[NexrenderApi]:
    process = await asyncio.create_subprocess_exec(
        nexrender.node,
        str(JS / "api.mjs"),
        server.http_url,
        env=nexrender.env(NEXRENDER_TRAFFIC=wire.file("api"), NEXRENDER_JOB_POLLING_MS="200"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    api = NexrenderApi(process)
    try:
        for name, secret in clients.items():
            await api.client(name, secret)
        yield api
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), WAIT)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), WAIT)
        api.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await api.reader


def status_view(job: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The body worker 1.63 PUTs while it renders: getRenderingStatus(job) of its copy."""
    view = {key: job.get(key) for key in nexrender_types.STATUS_KEYS}
    view["jobCreator"], view["jobExecutor"] = job.get("creator"), job.get("executor")
    return {**view, **changes}


# --- GraphQL: the subscriber, and the job as rendertrack holds it --------------------------------


@dataclass
class Watcher:
    """A `jobUpdated` subscriber; `seen`: (kind, status, progress, stage) of every event."""

    socket: Socket
    seen: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)

    async def until(self, status: str, progress: int | None = None, timeout: float = WAIT) -> None:
        """Reads events until one shows `status` (and `progress`)."""
        async with asyncio.timeout(timeout):
            while True:
                payload = await self.socket.next_payload()
                assert not payload.get("errors"), payload
                event = payload["data"]["jobUpdated"]
                job = event["job"]
                self.seen.append((event["kind"], job["status"], job["progress"], job["stage"]))
                self.last = job
                if job["status"] == status and progress in (None, job["progress"]):
                    return


@contextlib.asynccontextmanager
async def watching(server: LiveServer, token: str, job_id: str) -> AsyncIterator[Watcher]:
    async with open_socket(server) as socket:
        assert (await socket.init(token))["type"] == "connection_ack"
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        watcher = Watcher(socket)
        yield watcher


async def job_now(http: GraphQLClient, token: str, job_id: str) -> dict[str, Any]:
    response = await http(JOB, {"id": job_id}, token)
    assert not response.errors, response.errors
    return response.data["job"]


def history(job: dict[str, Any]) -> list[tuple[str, str | None, str | None, str]]:
    """(kind, duty, previousStatus, status) of each status change in the job's history."""
    return [
        (node["kind"], node["duty"], node["previousStatus"], node["job"]["status"])
        for node in (edge["node"] for edge in job["events"]["edges"])
        if node["kind"] in ("CREATED", "STATUS_CHANGED")
    ]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


# --- the real worker -----------------------------------------------------------------------------


def renderable_job(folder: Path) -> dict[str, Any]:
    """NEXRENDER.md's job JSON that renders with the stand-in, on a template file of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "template.aep"
    template.write_bytes(b"stand-in After Effects project")
    return {
        "template": {
            "src": template.as_uri(),
            "composition": "main",
            "outputExt": "mp4",
            "name": "template.aep",
        },
        "assets": [],
        "actions": {"postrender": []},
    }


def stand_in_aerender(node: str, folder: Path) -> Path:
    """An `aerender` running tests/js/nexrender/aerender.mjs, in a folder with the
    Scripts/Startup/commandLineRenderer.jsx that @nexrender/core patches."""
    startup = folder / "Scripts" / "Startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "commandLineRenderer.jsx").write_text("// stand-in: @nexrender/core patches it\n")
    binary = folder / "aerender"
    binary.write_text(
        f'#!/bin/sh\nexec {shlex.quote(node)} {shlex.quote(str(JS / "aerender.mjs"))} "$@"\n'
    )
    binary.chmod(0o755)
    return binary


@dataclass
class RenderNode:
    """One `@nexrender/worker` process (its own process group: aerender goes with it)."""

    name: str
    process: asyncio.subprocess.Process
    work: Path
    log: Path
    aerender_calls: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def aerender_args(self) -> list[list[str]]:
        if not self.aerender_calls.exists():
            return []
        return [json.loads(line) for line in self.aerender_calls.read_text().splitlines()]

    def kill(self) -> None:
        """SIGKILL to the worker and its aerender: a render node that died."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def render_node(
    nexrender: Packages,
    server: LiveServer,
    account: Account,
    folder: Path,
    wire: Wire,
    **aerender_env: str,
) -> AsyncIterator[RenderNode]:
    """`node -r shim.cjs worker.cjs <host> <secret>` (tests/js/nexrender/worker.cjs)."""
    name = account.email.split("@")[0]
    home = folder / name
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    log = home / "worker.log"
    aerender_calls = home / "aerender-calls.jsonl"
    env = nexrender.env(
        AERENDER_BINARY=str(stand_in_aerender(nexrender.node, home / "ae")),
        NEXRENDER_WORKPATH=str(work),
        NEXRENDER_TRAFFIC=wire.file(name),
        WORKER_NAME=name,
        AERENDER_ARGS_LOG=str(aerender_calls),
        **aerender_env,
    )
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            nexrender.node,
            "-r",
            str(JS / "shim.cjs"),
            str(JS / "worker.cjs"),
            server.http_url,
            account.token,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    node = RenderNode(name, process, work, log, aerender_calls)
    try:
        yield node
    finally:
        node.kill()
        await asyncio.wait_for(process.wait(), WAIT)


async def reported(wire: Wire, node: RenderNode, count: int) -> None:
    """Until `node` has had `count` PUTs answered (the server commits before it answers: an
    event can arrive before the worker has read its answer)."""

    async def done() -> bool:
        return len([put for put in wire.puts(node.name) if put[2] is not None]) >= count

    await eventually(done, WAIT, f"{node.name} has {count} reports answered")


async def polls_again(wire: Wire, node: RenderNode, uid: str, puts: int) -> None:
    """Until `node` lists the queue again after its `puts`-th PUT to `uid`: its loop goes on.
    Fails at once if the worker exited (its loop ended on a refused report)."""
    put = ("PUT", f"/api/v1/jobs/{uid}")

    async def listed() -> bool:
        alive(node)
        calls = [(e["method"], urlsplit(e["url"]).path) for e in wire.exchanges(node.name)]
        at = [n for n, call in enumerate(calls) if call == put]
        return len(at) >= puts and ("GET", "/api/v1/jobs") in calls[at[puts - 1] + 1 :]

    await eventually(listed, WAIT, f"{node.name} lists the queue again after {puts} reports")


def alive(node: RenderNode) -> None:
    if node.process.returncode is not None:
        last = node.output().strip().splitlines()[-1:]
        pytest.fail(f"{node.name} exited ({node.process.returncode}): {''.join(last)}")


# --- @nexrender/api: a render reported step by step ----------------------------------------------


async def submitted_and_picked(
    api: NexrenderApi, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A job with tags added by the user's client and picked up by the worker's with a tag
    selector (worker 1.63's --tag-selector): (added, picked)."""
    job = {**renderable_job(tmp_path / "templates"), "tags": "gpu,hd"}
    added = await api.call("user", "addJob", job)
    assert (added["state"], added["tags"]) == ("queued", "gpu,hd")
    assert await api.call("worker", "pickupJob", "cpu") == {}
    picked = await api.call("worker", "pickupJob", "gpu")
    assert (picked["uid"], picked["state"]) == (added["uid"], "picked")
    return added, picked


async def test_a_render_reported_through_nexrender_api_is_seen_live_to_completion(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(nexrender, live, wire, user=user.token, worker=worker.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        async with watching(live, user.token, uid) as watch:
            await watch.until("QUEUED")
            picked = await api.call("worker", "pickupJob")
            assert (picked["uid"], picked["state"]) == (uid, "picked")
            assert picked["executor"] == "worker"
            await watch.until("RENDERING")

            # Worker 1.63 PUTs its whole copy as `started`, then status views as it renders.
            started = await api.call("worker", "updateJob", uid, {**picked, "state": "started"})
            assert (started["state"], started["renderProgress"]) == ("started", 0)
            answers = []
            for percent in (25, 50, 75):
                view = status_view(started, state="render:dorender", renderProgress=percent)
                answers.append(await api.call("worker", "updateJob", uid, view))
                await watch.until("RENDERING", percent)
            assert [(a["state"], a["renderProgress"]) for a in answers] == [
                ("render:dorender", 25), ("render:dorender", 50), ("render:dorender", 75),
            ]  # fmt: skip
            finished = await api.call(
                "worker",
                "updateJob",
                uid,
                status_view(started, state="finished", renderProgress=100),
            )
            assert (finished["state"], finished["renderProgress"]) == ("finished", 100)
            await watch.until("COMPLETED")
            await watch.socket.expect_complete()

        # The emitter addJob returned polls /jobs/:uid/status until `finished`.
        done = await api.event("finished")
        assert (done["uid"], done["state"]) == (uid, "finished")
        assert any(e["event"] == "progress" and e["progress"] == 100 for e in api.seen_events)

        # The client that submitted it reads it back; the worker's next report is refused.
        fetched = await api.call("user", "fetchJob", uid)
        assert fetched["state"] == "finished" and fetched["finishedAt"]
        assert list(fetched["timings"]) == [
            "created", "queued", "started", "render:dorender", "finished",
        ]  # fmt: skip
        assert uid in [job["uid"] for job in await api.call("user", "listJobs")]
        late = status_view(started, state="render:dorender", renderProgress=90)
        assert (await api.refusal("worker", "updateJob", uid, late))["code"]

    assert watch.seen == [
        ("SNAPSHOT", "QUEUED", 0, None),
        ("STATUS_CHANGED", "RENDERING", 0, None),
        ("PROGRESS", "RENDERING", 25, "RENDERING"),
        ("PROGRESS", "RENDERING", 50, "RENDERING"),
        ("PROGRESS", "RENDERING", 75, "RENDERING"),
        ("STATUS_CHANGED", "COMPLETED", 100, None),
    ]
    job = await job_now(http, accounts["admin"].token, uid)
    assert (job["status"], job["progress"], job["attempts"]) == ("COMPLETED", 100, 1)
    assert job["worker"]["email"] == worker.email
    await check_answers(nexrender, wire)


async def test_a_render_reported_through_nexrender_api_that_ends_in_error_fails_the_job(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    line = f"aerender Error: {AERENDER_ERROR}"
    async with nexrender_api(nexrender, live, wire, user=user.token, worker=worker.token) as api:
        added, picked = await submitted_and_picked(api, tmp_path)
        uid = added["uid"]
        async with watching(live, user.token, uid) as watch:
            await watch.until("RENDERING")
            started = await api.call("worker", "updateJob", uid, {**picked, "state": "started"})
            for percent in (25, 50):
                view = status_view(started, state="render:dorender", renderProgress=percent)
                await api.call("worker", "updateJob", uid, view)
                await watch.until("RENDERING", percent)
            # As worker 1.63 does: the error line as soon as aerender prints it (the job goes
            # on), then `error` with every error it collected once the render gave up.
            still = await api.call(
                "worker",
                "updateJob",
                uid,
                status_view(started, state="render:dorender", renderProgress=50, error=[line]),
            )
            assert (still["state"], still["error"]) == ("render:dorender", None)
            ended = await api.call(
                "worker",
                "updateJob",
                uid,
                status_view(
                    started,
                    state="error",
                    renderProgress=50,
                    error=[line, "Error: Couldn't find a result file"],
                    errorAt="2026-01-31T12:00:00.000Z",
                ),
            )
            message = f"{line}\n\nError: Couldn't find a result file"
            assert (ended["state"], ended["error"]) == ("error", message)
            assert ended["errorAt"]
            await watch.until("FAILED")
            await watch.socket.expect_complete()
            assert watch.last["errorMessage"] == message

        failed = await api.event("error")
        assert (failed["uid"], failed["state"], failed["error"]) == (uid, "error", message)
        late = status_view(started, state="finished", renderProgress=100)
        assert (await api.refusal("worker", "updateJob", uid, late))["code"]

    assert watch.seen == [
        ("SNAPSHOT", "RENDERING", 0, None),
        ("PROGRESS", "RENDERING", 25, "RENDERING"),
        ("PROGRESS", "RENDERING", 50, "RENDERING"),
        ("LOG", "RENDERING", 50, "RENDERING"),  # the error line seen before the end
        ("STATUS_CHANGED", "FAILED", 50, None),
    ]
    job = await job_now(http, accounts["admin"].token, uid)
    assert (job["status"], job["errorMessage"]) == ("FAILED", message)
    assert line in job["logs"]
    await check_answers(nexrender, wire)


async def test_a_job_cancelled_over_graphql_refuses_the_nexrender_workers_next_report(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(nexrender, live, wire, user=user.token, worker=worker.token) as api:
        added, picked = await submitted_and_picked(api, tmp_path)
        uid = added["uid"]
        async with watching(live, user.token, uid) as watch:
            await watch.until("RENDERING")
            started = await api.call("worker", "updateJob", uid, {**picked, "state": "started"})
            view = status_view(started, state="render:dorender", renderProgress=25)
            await api.call("worker", "updateJob", uid, view)
            await watch.until("RENDERING", 25)

            response = await http(
                CANCEL, {"id": uid, "reason": "client changed the brief"}, user.token
            )
            assert not response.errors, response.errors
            await watch.until("CANCELLED")
            await watch.socket.expect_complete()

            view = status_view(started, state="render:dorender", renderProgress=50)
            refusal = await api.refusal("worker", "updateJob", uid, view)
            assert refusal["code"] == "INVALID_TRANSITION", refusal
            assert "CANCELLED" in refusal["error"], refusal
            finished = status_view(started, state="finished", renderProgress=100)
            assert (await api.refusal("worker", "updateJob", uid, finished))["code"]

        # A Nexrender client sees `error`, and stops polling.
        cancelled = await api.event("error")
        assert (cancelled["uid"], cancelled["state"]) == (uid, "error")
        assert "client changed the brief" in cancelled["error"]
        fetched = await api.call("user", "fetchJob", uid)
        assert (fetched["state"], fetched["renderProgress"]) == ("error", 25)

    job = await job_now(http, accounts["admin"].token, uid)
    assert (job["status"], job["progress"]) == ("CANCELLED", 25)
    assert job["cancelledReason"] == "client changed the brief"
    assert [seen[1] for seen in watch.seen][-1] == "CANCELLED"
    await check_answers(nexrender, wire)


async def test_a_job_removed_through_nexrender_api_is_cancelled_and_kept(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(nexrender, live, wire, user=user.token, worker=worker.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        # A worker sees a queued job (it may claim it) but may not remove it.
        assert (await api.refusal("worker", "removeJob", uid))["code"] == "FORBIDDEN"
        removed = await api.call("user", "removeJob", uid)
        assert (removed["uid"], removed["state"]) == (uid, "error")
        assert removed["error"].startswith("Cancelled")
        assert (await api.call("user", "fetchJob", uid))["state"] == "error"
        assert await api.call("worker", "pickupJob") == {}
        assert uid not in [job["uid"] for job in await api.call("worker", "listJobs")]

    job = await job_now(http, accounts["admin"].token, uid)
    assert job["status"] == "CANCELLED"
    await check_answers(nexrender, wire)


async def test_a_job_handed_back_through_nexrender_api_is_picked_up_by_another_worker(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    """Worker 1.63 on SIGINT/SIGTERM PUTs its job back as `queued` (a status view)."""
    user, worker, other = accounts["user"], accounts["worker"], accounts["worker2"]
    async with nexrender_api(
        nexrender, live, wire, user=user.token, worker=worker.token, worker2=other.token
    ) as api:
        added, picked = await submitted_and_picked(api, tmp_path)
        uid = added["uid"]
        started = await api.call("worker", "updateJob", uid, {**picked, "state": "started"})
        view = status_view(started, state="render:dorender", renderProgress=25)
        await api.call("worker", "updateJob", uid, view)
        back = await api.call("worker", "updateJob", uid, status_view(started, state="queued"))
        assert (back["state"], back["executor"]) == ("queued", None)
        assert (await api.refusal("worker", "updateJob", uid, view))["code"]
        again = await api.call("worker2", "pickupJob", "hd")
        assert (again["uid"], again["state"], again["executor"]) == (uid, "picked", "worker2")

    job = await job_now(http, accounts["admin"].token, uid)
    # The hand-back gave its attempt back; the second pickup is the job's first counted one.
    assert (job["status"], job["attempts"], job["worker"]["email"]) == (
        "RENDERING", 1, other.email,
    )  # fmt: skip
    await check_answers(nexrender, wire)


async def test_refusals_reach_the_nexrender_api_client_as_json(
    nexrender: Packages,
    live: LiveServer,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    """@nexrender/api rejects with the answer's body: rendertrack's is JSON saying why."""
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(
        nexrender, live, wire, user=user.token, worker=worker.token, stranger="rt_wrong"
    ) as api:
        assert (await api.refusal("stranger", "listJobs"))["code"] == "UNAUTHENTICATED"
        job = renderable_job(tmp_path / "templates")
        broken = {**job, "template": {**job["template"], "composition": ""}}
        refusal = await api.refusal("user", "addJob", broken)
        assert refusal["code"] == "BAD_USER_INPUT", refusal
        assert "template.composition" in [item["field"] for item in refusal["fields"]], refusal
        assert (await api.refusal("worker", "addJob", job))["code"] == "FORBIDDEN"
        assert (await api.refusal("user", "pickupJob"))["code"] == "FORBIDDEN"
        assert (await api.refusal("user", "fetchJob", "no-such-job"))["code"] == "NOT_FOUND"
        assert await api.call("user", "listJobs") == []


# --- the real worker 1.8.16 with core 1.63.3 ---------------------------------------------------


async def test_the_real_worker_renders_a_job_submitted_over_the_rest_api(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(nexrender, live, wire, user=user.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        async with watching(live, user.token, uid) as watch:
            await watch.until("QUEUED")
            async with render_node(nexrender, live, worker, tmp_path, wire) as node:
                await watch.until("COMPLETED", timeout=RENDER_WAIT)
                await watch.socket.expect_complete()
                await reported(wire, node, 2)
                alive(node)
        done = await api.event("finished")
        assert done["uid"] == uid

    assert [seen[:3] for seen in watch.seen] == [
        ("SNAPSHOT", "QUEUED", 0),
        ("STATUS_CHANGED", "RENDERING", 0),
        ("STATUS_CHANGED", "COMPLETED", 100),
    ]
    # Worker 1.8.16 took the job from GET /jobs, and says `started`, then `finished`.
    assert [(state, status) for state, _, status in wire.puts(node.name)] == [
        ("started", 200),
        ("finished", 200),
    ]
    # Core ran aerender on its copy of the template; the result is where it said it would be.
    [args] = node.aerender_args()
    folder = node.work / uid
    assert args[:6] == [
        "-project", str(folder / "template.aep"), "-comp", "main", "-output",
        str(folder / "result.mp4"),
    ]  # fmt: skip
    assert (folder / "result.mp4").stat().st_size == 4096
    job = await job_now(http, accounts["admin"].token, uid)
    assert (job["status"], job["progress"], job["attempts"]) == ("COMPLETED", 100, 1)
    assert job["worker"]["email"] == worker.email
    await check_answers(nexrender, wire)


async def test_a_failed_render_of_the_real_worker_fails_the_job(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(nexrender, live, wire, user=user.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        async with (
            watching(live, user.token, uid) as watch,
            render_node(
                nexrender,
                live,
                worker,
                tmp_path,
                wire,
                AERENDER_FAIL="1",
                AERENDER_ERROR=AERENDER_ERROR,
            ) as node,
        ):
            await watch.until("FAILED", timeout=RENDER_WAIT)
            await watch.socket.expect_complete()

            # The loop goes on: the worker lists the queue again after its report.
            await reported(wire, node, 2)
            await polls_again(wire, node, uid, 2)
            alive(node)
        failed = await api.event("error")
        assert failed["uid"] == uid

    # The stand-in printed the error line and wrote nothing; core reported the missing result.
    assert f"aerender Error: {AERENDER_ERROR}" in node.output()
    assert "Couldn't find a result file" in node.output()
    assert not (node.work / uid / "result.mp4").exists()
    # Worker 1.8.16 sends the Error it caught as JSON, which is `{}`: the aerender line never
    # reaches the server (1.63 sends it as text; see the @nexrender/api test above).
    assert wire.puts(node.name) == [("started", None, 200), ("error", {}, 200)]
    job = await job_now(http, accounts["admin"].token, uid)
    assert (job["status"], job["errorMessage"]) == ("FAILED", NO_MESSAGE)
    assert [seen[1] for seen in watch.seen] == ["QUEUED", "RENDERING", "FAILED"]
    await check_answers(nexrender, wire)


async def test_a_job_cancelled_while_the_real_worker_renders_it_stays_cancelled(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    """Worker 1.8.16 cannot stop aerender: it renders on, its `finished` is refused, and the
    `error` it sends next is agreed to, so its loop goes on."""
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(nexrender, live, wire, user=user.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        async with (
            watching(live, user.token, uid) as watch,
            render_node(nexrender, live, worker, tmp_path, wire, AERENDER_SECONDS="2") as node,
        ):
            await watch.until("RENDERING", timeout=RENDER_WAIT)

            async def rendering() -> bool:
                return bool(node.aerender_args())

            await eventually(rendering, WAIT, "the worker's aerender runs")
            response = await http(CANCEL, {"id": uid, "reason": "wrong logo"}, user.token)
            assert not response.errors, response.errors
            await watch.until("CANCELLED")
            await watch.socket.expect_complete()
            await reported(wire, node, 3)
            await polls_again(wire, node, uid, 2)
            alive(node)

    sent = wire.puts(node.name)
    assert [(state, status) for state, _, status in sent] == [
        ("started", 200),
        ("finished", 409),
        ("error", 200),
    ]
    assert (node.work / uid / "result.mp4").exists()  # the render went on, unknowing
    job = await job_now(http, accounts["admin"].token, uid)
    assert (job["status"], job["progress"], job["cancelledReason"]) == (
        "CANCELLED",
        0,
        "wrong logo",
    )
    await check_answers(nexrender, wire)


async def test_two_real_workers_share_the_queue_and_render_each_job_once(
    nexrender: Packages,
    live: LiveServer,
    http: GraphQLClient,
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    """Worker 1.8.16 picks a random `queued` job from its list: two of them may both go for the
    same one, and the claim of its `started` lets one have it."""
    user, admin = accounts["user"], accounts["admin"].token
    async with nexrender_api(nexrender, live, wire, user=user.token) as api:
        uids = [
            (await api.call("user", "addJob", renderable_job(tmp_path / f"templates{n}")))["uid"]
            for n in range(4)
        ]
        async with (
            render_node(nexrender, live, accounts["worker"], tmp_path, wire) as one,
            render_node(nexrender, live, accounts["worker2"], tmp_path, wire) as two,
        ):

            async def all_completed() -> bool:
                statuses = [(await job_now(http, admin, uid))["status"] for uid in uids]
                return statuses == ["COMPLETED"] * len(uids)

            await eventually(all_completed, RENDER_WAIT, "both workers render the four jobs")
            alive(one)
            alive(two)

    rendered = [Path(args[1]).parent.name for node in (one, two) for args in node.aerender_args()]
    assert sorted(rendered) == sorted(uids)  # each job rendered once, by one of them
    for node in (one, two):
        for state, _, status in wire.puts(node.name):
            # The loser of a race for a job is refused and abandons it (404 once another holds
            # it; 409 if they collide in the claim itself).
            assert (state, status) in {
                ("started", 200), ("started", 404), ("started", 409), ("finished", 200),
            }  # fmt: skip
    await check_answers(nexrender, wire)


# --- a worker that dies: the stall timeout hands its job to another -------------------------------


@pytest_asyncio.fixture
async def stalling(db: str) -> AsyncIterator[tuple[LiveServer, GraphQLClient]]:
    """A live server whose workers go stale after STALL_SECONDS of silence."""
    settings = Settings(
        database_url=db, stall_timeout_seconds=STALL_SECONDS, sweep_interval_seconds=0.5
    )
    async with (
        serve(create_app(settings, manage_database=False)) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=10) as client,
    ):
        yield server, GraphQLClient(client)


async def test_a_job_of_a_killed_worker_is_requeued_and_rendered_by_another(
    nexrender: Packages,
    stalling: tuple[LiveServer, GraphQLClient],
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    server, http = stalling
    user, admin = accounts["user"], accounts["admin"].token
    first, second = accounts["worker"], accounts["worker2"]
    async with nexrender_api(nexrender, server, wire, user=user.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        async with watching(server, user.token, uid) as watch:
            await watch.until("QUEUED")
            async with render_node(
                nexrender, server, first, tmp_path, wire, AERENDER_SECONDS="60"
            ) as dying:
                await watch.until("RENDERING", timeout=RENDER_WAIT)

                async def rendering() -> bool:
                    return bool(dying.aerender_args())

                await eventually(rendering, WAIT, "the first worker's aerender runs")
                dying.kill()
                await asyncio.wait_for(dying.process.wait(), WAIT)
                killed_at = time.monotonic()
                await watch.until("QUEUED", timeout=STALL_SECONDS + WAIT)
                requeued_after = time.monotonic() - killed_at
            async with render_node(nexrender, server, second, tmp_path, wire) as survivor:
                await watch.until("COMPLETED", timeout=RENDER_WAIT)
                await watch.socket.expect_complete()
                await reported(wire, survivor, 2)
                alive(survivor)

    assert requeued_after < STALL_SECONDS + 2, requeued_after
    assert [seen[1] for seen in watch.seen] == [
        "QUEUED", "RENDERING", "QUEUED", "RENDERING", "COMPLETED",
    ]  # fmt: skip
    assert [state for state, _, _ in wire.puts(dying.name)] == ["started"]
    assert [(state, status) for state, _, status in wire.puts(survivor.name)] == [
        ("started", 200),
        ("finished", 200),
    ]
    assert (survivor.work / uid / "result.mp4").exists()
    assert not (dying.work / uid / "result.mp4").exists()
    job = await job_now(http, admin, uid)
    assert (job["status"], job["attempts"]) == ("COMPLETED", 2)
    assert job["worker"]["email"] == second.email
    assert history(job) == [
        ("CREATED", None, None, "PENDING"),
        ("STATUS_CHANGED", None, "PENDING", "VALIDATING"),
        ("STATUS_CHANGED", None, "VALIDATING", "QUEUED"),
        ("STATUS_CHANGED", None, "QUEUED", "RENDERING"),
        ("STATUS_CHANGED", "STALL_RECOVERY", "RENDERING", "QUEUED"),
        ("STATUS_CHANGED", None, "QUEUED", "RENDERING"),
        ("STATUS_CHANGED", None, "RENDERING", "COMPLETED"),
    ]
    await check_answers(nexrender, wire)


async def test_a_render_longer_than_the_stall_timeout_is_taken_back_by_its_worker(
    nexrender: Packages,
    stalling: tuple[LiveServer, GraphQLClient],
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    """Worker 1.8.16 says nothing between `started` and `finished`: its job goes back to the
    queue while it renders, and its `finished` takes it back (nobody claimed it since)."""
    server, http = stalling
    user, worker = accounts["user"], accounts["worker"]
    async with nexrender_api(nexrender, server, wire, user=user.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        async with watching(server, user.token, uid) as watch:
            await watch.until("QUEUED")
            async with render_node(
                nexrender, server, worker, tmp_path, wire, AERENDER_SECONDS=str(STALL_SECONDS * 2.5)
            ) as node:
                await watch.until("COMPLETED", timeout=RENDER_WAIT)
                await watch.socket.expect_complete()
                await reported(wire, node, 2)
                alive(node)

    assert [seen[1] for seen in watch.seen] == [
        "QUEUED", "RENDERING", "QUEUED", "RENDERING", "COMPLETED",
    ]  # fmt: skip
    assert [(state, status) for state, _, status in wire.puts(node.name)] == [
        ("started", 200),
        ("finished", 200),
    ]
    job = await job_now(http, accounts["admin"].token, uid)
    assert (job["status"], job["worker"]["email"]) == ("COMPLETED", worker.email)
    await check_answers(nexrender, wire)


async def test_a_slow_worker_whose_job_another_finished_goes_on_working(
    nexrender: Packages,
    stalling: tuple[LiveServer, GraphQLClient],
    accounts: dict[str, Account],
    wire: Wire,
    tmp_path: Path,
) -> None:
    """A worker 1.8.16 silent past the stall timeout (a long frame, a frozen node) loses its job
    to another, which finishes it. When its own render ends, its `finished` is refused and it
    reports `error`: if that is refused too, the exception escapes its loop and the render node
    stops for good. The job must stay as the other worker left it, and the node must go on."""
    server, http = stalling
    user, admin = accounts["user"], accounts["admin"].token
    slow_account, fast_account = accounts["worker"], accounts["worker2"]
    async with nexrender_api(nexrender, server, wire, user=user.token) as api:
        added = await api.call("user", "addJob", renderable_job(tmp_path / "templates"))
        uid = added["uid"]
        async with (
            watching(server, user.token, uid) as watch,
            render_node(
                nexrender, server, slow_account, tmp_path, wire, AERENDER_SECONDS="8"
            ) as slow,
        ):
            await watch.until("RENDERING", timeout=RENDER_WAIT)
            await watch.until("QUEUED", timeout=STALL_SECONDS + WAIT)
            async with render_node(nexrender, server, fast_account, tmp_path, wire) as fast:
                await watch.until("COMPLETED", timeout=RENDER_WAIT)
                await watch.socket.expect_complete()
                await reported(wire, fast, 2)
            # The slow one's aerender ends; it reports `finished`, then `error`.
            await reported(wire, slow, 3)
            await polls_again(wire, slow, uid, 3)
            alive(slow)

    assert [state for state, _, _ in wire.puts(slow.name)] == ["started", "finished", "error"]
    assert wire.puts(slow.name)[1][2] >= 400  # a finished job is not the slow worker's to finish
    job = await job_now(http, admin, uid)
    assert (job["status"], job["worker"]["email"]) == ("COMPLETED", fast_account.email)
    await check_answers(nexrender, wire)
