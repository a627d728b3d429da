"""`rendertrack simulate-worker` as a real subprocess against a real server: it renders jobs to
COMPLETED with their progress on record, fails them at --fail-rate 1, hands its job back on
SIGTERM and exits 0, drops a job cancelled under it and goes on, and backs off from a server it
cannot reach. Each behaviour over GraphQL and over Nexrender's REST API (/api/v1); the latter is
skipped while the server has no /api/v1 (compat/ not there yet). A stand-in Nexrender server
checks what the nexrender client puts on the wire either way."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import random
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from domain.events import JobEventKind
from domain.status import JobStatus
from models import Job
from service import event_store
from tests.conftest import Account
from tests.databases import only_in_pass
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer, serve
from tests.operations import mutate, submit
from tests.server_process import free_port, rendertrack_command
from worker_sim.options import add_arguments
from worker_sim.render import RenderPlan, plan_render

RUN_TIMEOUT = 30.0
CANCEL = 'mutation($id: ID!) { cancelJob(id: $id, reason: "changed my mind") { id status } }'
NEXRENDER_SKIP = (
    "the server answers 404 on /api/v1/health: the Nexrender REST API (compat/) is not in this "
    "tree yet, so only the GraphQL protocol runs against a real server"
)

pytestmark = [
    pytest.mark.slow,
    only_in_pass(
        "sqlite",
        "a client of the API runs the same on both databases (test_compat_api.py and "
        "test_queue_api.py cover the API on PostgreSQL)",
    ),
]


@dataclass
class Simulator:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task | None = None

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def exit_code(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            pytest.fail(f"the simulator did not stop within {timeout}s:\n{self.log}")
        if self.reader is not None:
            await self.reader
        return code


async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace").rstrip())


@contextlib.asynccontextmanager
async def simulator(url: str, token: str, *args: str) -> AsyncIterator[Simulator]:
    """`rendertrack simulate-worker` running; killed on the way out if it is still there."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = await asyncio.create_subprocess_exec(
        *rendertrack_command(),
        "simulate-worker",
        "--url",
        url,
        "--token",
        token,
        "--poll",
        "0.2",
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    running = Simulator(process)
    running.reader = asyncio.create_task(_read(process.stderr, running.lines))
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await running.reader


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 15
) -> None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                done = check()
                if inspect.isawaitable(done):
                    done = await done
                if done:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"no {what} within {timeout}s")


def job_is(job_id: str, status: JobStatus, least_progress: int = 0) -> Callable:
    async def check() -> bool:
        job = await Job.get(id=job_id)
        return job.status == status and job.progress >= least_progress

    return check


@pytest.fixture(params=["graphql", "nexrender"])
async def protocol(request: pytest.FixtureRequest, live: LiveServer) -> str:
    if request.param == "nexrender":
        async with httpx.AsyncClient(base_url=live.http_url) as client:
            if (await client.get("/api/v1/health")).status_code == 404:
                pytest.skip(NEXRENDER_SKIP)
    return request.param


# A render spec: Nexrender's pickup hands out only jobs a Nexrender worker can render.
RENDER_SPEC = {
    "template": {
        "src": "file:///mnt/jobs/promo.aep",
        "composition": "main",
        "name": "promo.aep",
        "outputExt": "mp4",
    },
    "assets": [],
    "actions": {"postrender": []},
}


async def submit_job(http: GraphQLClient, token: str, **fields: Any) -> str:
    return await submit(http, token, nexrenderConfig=RENDER_SPEC, **fields)


def worker_args(protocol: str, *args: str) -> list[str]:
    return ["--protocol", protocol, "--name", "sim-test", *args]


@pytest.mark.slow
async def test_jobs_are_rendered_to_completed_with_their_progress_on_record(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account], protocol: str
) -> None:
    owner, worker = accounts["user"].token, accounts["worker"].token
    ids = [await submit_job(http, owner, projectName=f"Spot {n}") for n in (1, 2)]
    args = worker_args(protocol, "--duration", "1", "--jobs", "2", "--seed", "7")
    async with simulator(live.http_url, worker, *args) as running:
        assert await running.exit_code() == 0, running.log

    for job_id in ids:
        job = await Job.get(id=job_id)
        assert (job.status, job.progress, job.attempts) == (JobStatus.COMPLETED, 100, 1)
        events = await event_store.job_events(job_id, 0)
        statuses = [e.status for e in events if e.kind == JobEventKind.STATUS_CHANGED]
        assert statuses[-2:] == [JobStatus.RENDERING, JobStatus.COMPLETED]
        steps = [e.progress for e in events if e.kind == JobEventKind.PROGRESS]
        assert len(steps) >= 3 and steps == sorted(steps) and steps[-1] >= 75, steps
        assert f"job {job_id} claimed" in running.log
        assert f"job {job_id} completed" in running.log
        assert f"job {job_id} 50%" in running.log
    if protocol == "graphql":  # Nexrender carries no log lines
        log = (await mutate(http, owner, "query($id: ID!) { job(id: $id) { logs } }", id=ids[0]))[
            "job"
        ]["logs"]
        assert "PROGRESS:  Duration:" in log and 'Finished composition "main"' in log, log
        assert re.search(r"PROGRESS:  \d:\d\d:\d\d:\d\d \(\d+\): \d+ Seconds", log), log
    assert "stopped (2 completed)" in running.log


@pytest.mark.slow
async def test_fail_rate_one_fails_every_job_with_a_renderer_error(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account], protocol: str
) -> None:
    owner, worker = accounts["user"].token, accounts["worker"].token
    ids = [await submit_job(http, owner, projectName=f"Doomed {n}", maxAttempts=1) for n in (1, 2)]
    args = worker_args(
        protocol, "--duration", "1", "--jobs", "2", "--fail-rate", "1", "--concurrency", "2"
    )
    async with simulator(live.http_url, worker, *args) as running:
        assert await running.exit_code() == 0, running.log

    for job_id in ids:
        job = await Job.get(id=job_id)
        assert job.status == JobStatus.FAILED, running.log
        assert "aerender Error" in (job.error_message or ""), job.error_message
        assert f"job {job_id} failed at frame" in running.log
    assert "stopped (2 failed)" in running.log
    assert "sim-test#1 job" in running.log and "sim-test#2 job" in running.log  # side by side


@pytest.mark.slow
async def test_sigterm_mid_render_hands_the_job_back_and_exits_0(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account], protocol: str
) -> None:
    owner, worker = accounts["user"].token, accounts["worker"].token
    job_id = await submit_job(http, owner)
    args = worker_args(protocol, "--duration", "30", "--heartbeat", "0.3", "--seed", "1")
    async with simulator(live.http_url, worker, *args) as running:
        await eventually(job_is(job_id, JobStatus.RENDERING, least_progress=1), "progress")
        await eventually(lambda: "heartbeat" in running.log, f"heartbeat in:\n{running.log}")
        running.process.send_signal(signal.SIGTERM)
        assert await running.exit_code(timeout=10) == 0, running.log

    job = await Job.get(id=job_id)
    assert job.status == JobStatus.QUEUED
    assert (job.attempts, job.worker_id, job.progress) == (0, None, 0)  # the attempt given back
    assert f"job {job_id} handed back to the queue" in running.log
    assert "SIGTERM" in running.log


@pytest.mark.slow
async def test_a_job_cancelled_mid_render_is_dropped_and_the_next_one_rendered(
    live: LiveServer, http: GraphQLClient, accounts: dict[str, Account], protocol: str
) -> None:
    owner, worker = accounts["user"].token, accounts["worker"].token
    cancelled = await submit_job(http, owner, projectName="Cancelled", priority=9)
    rendered = await submit_job(http, owner, projectName="Rendered", priority=5)
    args = worker_args(protocol, "--duration", "2", "--jobs", "2", "--seed", "3")
    async with simulator(live.http_url, worker, *args) as running:
        await eventually(job_is(cancelled, JobStatus.RENDERING, least_progress=1), "progress")
        await mutate(http, owner, CANCEL, id=cancelled)
        assert await running.exit_code() == 0, running.log

    assert (await Job.get(id=cancelled)).status == JobStatus.CANCELLED
    assert (await Job.get(id=rendered)).status == JobStatus.COMPLETED, running.log
    dropped = [line for line in running.log.splitlines() if f"job {cancelled} dropped" in line]
    assert len(dropped) == 1, running.log
    if protocol == "graphql":
        assert "INVALID_TRANSITION" in dropped[0]
    assert "Traceback" not in running.log


async def test_a_refused_token_stops_the_worker_with_one_line(live: LiveServer) -> None:
    async with simulator(live.http_url, "rt_not-a-token", "--jobs", "1") as running:
        assert await running.exit_code(timeout=15) == 1
    assert "UNAUTHENTICATED" in running.log and "Traceback" not in running.log


@pytest.mark.slow
async def test_an_unreachable_server_is_retried_with_a_bounded_back_off() -> None:
    async with simulator(f"http://127.0.0.1:{free_port()}", "rt_whatever", "--jobs", "1") as run:
        async with asyncio.timeout(15):
            while "cannot claim" not in run.log:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.8)
        run.process.send_signal(signal.SIGINT)
        assert await run.exit_code(timeout=10) == 0, run.log
    delays = re.findall(r"cannot claim: .*; trying again in ([\d.]+)s", run.log)
    assert delays[:2] == ["0.5", "1"], run.log  # doubling: no hot loop
    assert len(delays) <= 3, run.log


def test_the_command_is_listed_and_checks_its_options() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")}
    command = [*rendertrack_command(), "simulate-worker"]
    listed = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and "--fail-rate" in listed.stdout
    no_token = subprocess.run(command, capture_output=True, text=True, env=env)
    assert no_token.returncode == 1
    assert "RENDERTRACK_WORKER_TOKEN" in no_token.stderr and "Traceback" not in no_token.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [("--fail-rate", "2"), ("--fail-rate", "nan"), ("--duration", "0"), ("--concurrency", "0")],
)
def test_out_of_range_options_are_refused(option: str, value: str) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["--token", "t", option, value])
    assert refused.value.code == 2


def test_a_seed_gives_the_same_renders_and_the_fail_rate_is_kept() -> None:
    def plans(seed: str, rate: float) -> list[RenderPlan]:
        return [plan_render(random.Random(f"{seed}:{n}"), 20, rate) for n in range(200)]

    assert plans("a", 0.3) == plans("a", 0.3)
    assert plans("a", 0.3) != plans("b", 0.3)
    assert not any(plan.failure for plan in plans("a", 0))
    assert all(plan.failure for plan in plans("a", 1))
    assert 30 <= sum(plan.failure is not None for plan in plans("a", 0.3)) <= 90
    for plan in plans("c", 0):
        assert 16 <= plan.seconds <= 24
        progress = [step.progress for step in plan.steps]
        assert progress == sorted(set(progress)) and progress[-1] == 100
        assert plan.steps[-1].frame == plan.frames


# -- the nexrender client against a stand-in server ------------------------------------------


class StandInNexrender:
    """Just enough of @nexrender/server (NEXRENDER.md): pickup hands out the queued jobs in turn
    (`{}` when none), PUT merges into the stored job and answers it, or 409 once a job is
    cancelled. Every request is recorded."""

    def __init__(self, *uids: str) -> None:
        self.jobs = {
            uid: {
                "uid": uid,
                "type": "default",
                "state": "queued",
                "tags": "promo",
                "template": {"src": "file:///mnt/t.aep", "composition": "intro"},
                "assets": [],
                "actions": {"postrender": []},
            }
            for uid in uids
        }
        self.cancelled: set[str] = set()
        self.puts: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/api/v1/jobs/pickup", self.pickup, methods=["GET"]),
                Route("/api/v1/jobs/{uid}", self.put, methods=["PUT"]),
            ]
        )

    async def pickup(self, request: Request) -> JSONResponse:
        self.headers.append(dict(request.headers))
        if request.headers.get("nexrender-secret") != "secret":
            return JSONResponse({"error": "wrong secret"}, status_code=403)
        for job in self.jobs.values():
            if job["state"] == "queued":
                job["state"] = "picked"
                return JSONResponse(job)
        return JSONResponse({})

    async def put(self, request: Request) -> JSONResponse:
        uid = request.path_params["uid"]
        body = await request.json()
        self.puts.append((uid, body))
        if uid in self.cancelled:
            return JSONResponse({"error": f"job {uid} was cancelled"}, status_code=409)
        self.jobs[uid].update(body)
        return JSONResponse(self.jobs[uid])

    def states(self, uid: str) -> list[str]:
        return [body["state"] for put_uid, body in self.puts if put_uid == uid]


@pytest.mark.slow
async def test_the_nexrender_client_speaks_like_a_stock_worker() -> None:
    fake = StandInNexrender("job-a", "job-b", "job-c")
    fake.cancelled.add("job-b")  # its first PUT is refused: dropped, and on to the next
    args = ["--protocol", "nexrender", "--duration", "0.6", "--jobs", "3", "--name", "node7"]
    async with serve(fake.app) as server, simulator(server.http_url, "secret", *args) as running:
        assert await running.exit_code() == 0, running.log

    states = fake.states("job-a")
    assert states[0] == "started" and states[-1] == "finished", states
    assert set(states[1:-1]) == {"render:dorender"}, states
    progress = [body["renderProgress"] for uid, body in fake.puts[1:] if uid == "job-a"]
    assert progress == sorted(progress) and progress[-1] == 100, progress
    started = next(body for uid, body in fake.puts if uid == "job-a")
    assert started["template"]["composition"] == "intro"  # the whole job, as a stock worker
    assert fake.states("job-b") == ["started"]
    assert "job job-b dropped: PUT started: HTTP 409 job job-b was cancelled" in running.log
    assert fake.states("job-c")[-1] == "finished"
    assert all(h.get("nexrender-name") == "node7" for h in fake.headers)


async def test_the_nexrender_client_reports_a_failure_as_an_error_state() -> None:
    fake = StandInNexrender("job-a", "job-b")
    args = ["--protocol", "nexrender", "--duration", "0.3", "--fail-rate", "1", "--jobs", "1"]
    async with serve(fake.app) as server, simulator(server.http_url, "secret", *args) as running:
        assert await running.exit_code() == 0, running.log
    assert fake.states("job-a")[-1] == "error" and fake.states("job-b") == []
    error = fake.puts[-1][1]
    assert error["error"].startswith("aerender Error") and error["errorAt"].endswith("Z")
    assert "(retryable)" not in running.log  # Nexrender has no retries to ask for
