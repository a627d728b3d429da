"""SIGTERM to a real `rendertrack serve`: open websockets are closed at once with 1001 "going
away" (on both protocols), new connections are refused, the request in flight still completes,
and the process exits 0 within a few seconds with no traceback in its log."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import LEGACY_WS, TRANSPORT_WS, closed_within, open_socket
from tests.observed_server import server_database
from tests.server_process import rendertrack_serve

WAIT = 10.0
# Well under uvicorn's graceful timeout (app/factory.py: GRACEFUL_SHUTDOWN_SECONDS).
PROMPTLY = 2.0
ME = "query Me { me { id } }"


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


@pytest.mark.slow
async def test_sigterm_closes_websockets_with_1001_and_lets_the_request_in_flight_finish(
    tmp_path: Path,
) -> None:
    async with (
        server_database(tmp_path) as url,
        rendertrack_serve(url, tmp_path / "logs") as server,
    ):
        token = await server.read_token()
        await server.until_healthy()
        body = json.dumps({"query": ME}).encode()
        sending, release = asyncio.Event(), asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield body[:8]
            sending.set()
            await release.wait()
            yield body[8:]

        async with (
            open_socket(server.live, TRANSPORT_WS) as modern,
            open_socket(server.live, LEGACY_WS) as legacy,
            httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as http,
        ):
            for socket in (modern, legacy):
                assert (await socket.init(token))["type"] == "connection_ack"
                await socket.subscribe("subscription { jobEvents { kind } }", {})
            in_flight = asyncio.create_task(
                http.post(
                    "/graphql",
                    content=slow_body(),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
            )
            await asyncio.wait_for(sending.wait(), WAIT)
            await asyncio.sleep(0.3)  # the server has read the request's head

            server.process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            for socket in (modern, legacy):
                code, reason = await closed_within(socket, PROMPTLY)
                assert code == 1001, (socket.protocol, code, reason)
                assert "shutting down" in reason
            assert time.monotonic() - stopping < PROMPTLY
            async with asyncio.timeout(PROMPTLY):
                while not await refused(server.port):
                    await asyncio.sleep(0.05)
            assert not in_flight.done()

            release.set()
            answered = await asyncio.wait_for(in_flight, WAIT)
        assert answered.status_code == 200
        assert answered.json()["data"]["me"]["id"]
        returncode = await asyncio.wait_for(server.process.wait(), WAIT)
        stopped_in = time.monotonic() - stopping

    assert returncode == 0, server.log_tail()
    assert stopped_in < 5.0
    log = server.log_text()
    assert "Traceback" not in log
    assert len(re.findall(r"websocket closed /graphql request_id=\S+ code=1001 ", log)) == 2, log
    assert "Stopping: closed 2 websocket(s) with 1001" in log
    assert "POST /graphql 200" in log.split("Stopping:", 1)[1]
