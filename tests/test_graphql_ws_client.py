"""The real client: the graphql-ws npm package (what most frontends use) follows a job live.

The test installs graphql-ws and ws with npm into .cache/npm-client (not committed) once, and
runs tests/js/subscribe.mjs with Node against the in-process uvicorn server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from testkit import npm
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer
from tests.operations import CLAIM, COMPLETE, REPORT, SUBMIT, VALID_INPUT, mutate

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
JS = REPO / "tests" / "js"
SCRIPT = JS / "subscribe.mjs"
WAIT = 15.0


@pytest.fixture(scope="session")
def node_client() -> Path:
    """The folder whose node_modules hold the pinned graphql-ws and ws (installed once)."""
    return npm.installed(JS / "package.json", "npm-client", "the graphql-ws client test")[1]


class NodeSubscriber:
    """subscribe.mjs running as a child process; its stdout read one JSON line at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, timeout: float = WAIT) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            pytest.fail(f"no line from the graphql-ws client within {timeout}s")
        if not raw:
            code = await self.wait()
            pytest.fail(f"the graphql-ws client exited ({code}) early: {await self.stderr()}")
        return json.loads(raw)

    async def wait(self, timeout: float = WAIT) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.read(), WAIT)).decode()


@contextlib.asynccontextmanager
async def node_subscriber(
    client_dir: Path, url: str, token: str, job_id: str, count: int
) -> AsyncIterator[NodeSubscriber]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        url,
        token,
        job_id,
        str(count),
        env={**os.environ, "NPM_CLIENT_DIR": str(client_dir), "SUBSCRIBE_TIMEOUT_MS": "30000"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeSubscriber(process)
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), WAIT)


def summary(line: dict[str, Any]) -> tuple[str, str, int]:
    return (line["kind"], line["job"]["status"], line["job"]["progress"])


async def test_the_graphql_ws_npm_client_follows_a_render_to_completion(
    node_client: Path, live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, worker = accounts["user"].token, accounts["worker"].token
    job_id = (await mutate(http, user, SUBMIT, input=VALID_INPUT))["submitJob"]["id"]

    async with node_subscriber(node_client, live.ws_url, user, job_id, count=5) as node:
        # The SNAPSHOT comes after the subscription is on the bus: nothing after it is missed.
        lines = [await node.line(timeout=30)]
        steps: list[tuple[str, dict[str, Any]]] = [
            (CLAIM, {}),
            (REPORT, {"id": job_id, "p": 25}),
            (REPORT, {"id": job_id, "p": 75}),
            (COMPLETE, {"id": job_id}),
        ]
        for query, variables in steps:
            await mutate(http, worker, query, **variables)
            lines.append(await node.line())  # one at a time: progress never coalesces
        assert await node.line() == {"complete": True}
        exit_code = await node.wait()
        assert exit_code == 0, await node.stderr()

    assert [summary(line) for line in lines] == [
        ("SNAPSHOT", "QUEUED", 0),
        ("STATUS_CHANGED", "RENDERING", 0),
        ("PROGRESS", "RENDERING", 25),
        ("PROGRESS", "RENDERING", 75),
        ("STATUS_CHANGED", "COMPLETED", 100),
    ]
    assert {line["job"]["id"] for line in lines} == {job_id}
    assert [line["previousStatus"] for line in lines] == [
        None, "QUEUED", None, None, "RENDERING",
    ]  # fmt: skip
    sequences = [line["sequence"] for line in lines]
    assert sequences == sorted(set(sequences)), sequences


async def test_the_graphql_ws_npm_client_fails_on_a_wrong_token(
    node_client: Path, live: LiveServer, http: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = (await mutate(http, accounts["user"].token, SUBMIT, input=VALID_INPUT))["submitJob"][
        "id"
    ]
    async with node_subscriber(node_client, live.ws_url, "rt_wrong", job_id, count=0) as node:
        exit_code = await node.wait()
        stderr = await node.stderr()
        assert exit_code != 0, stderr
        assert "4403" in stderr, stderr
        assert node.process.stdout is not None
        assert await node.process.stdout.read() == b""
