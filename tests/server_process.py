"""`rendertrack serve` as a real subprocess: started on a free port in a session of its own,
stopped with SIGINT (uvicorn's graceful stop) and killed with its workers if it lingers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.live_server import LiveServer

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rendertrack_command() -> list[str]:
    script = Path(sys.executable).parent / "rendertrack"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def environment(database_url: str) -> dict[str, str]:
    """This process's environment without any RENDERTRACK_ setting but the database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")}
    env["RENDERTRACK_DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ServerProcess:
    """One `rendertrack serve` (with its workers, if any); stderr goes to a log file, stdout is
    read by the test: it holds the bootstrap ADMIN's token and nothing else."""

    process: asyncio.subprocess.Process
    port: int
    log: Path
    stdout_rest: bytes = field(default=b"")
    stopped_by_sigint: bool = False

    @property
    def live(self) -> LiveServer:
        return LiveServer(app=None, port=self.port)  # type: ignore[arg-type]

    @property
    def http_url(self) -> str:
        return self.live.http_url

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_tail(self) -> str:
        return self.log_text()[-3000:]

    async def read_token(self) -> str:
        """The bootstrap ADMIN's token, the first line a first start prints on stdout."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"no token on stdout within {START_TIMEOUT}s:\n{self.log_tail()}")
        token = line.decode().strip()
        assert token.startswith("rt_") and " " not in token, (line, self.log_tail())
        return token

    async def until_healthy(self) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.http_url, timeout=2) as client:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    if self.process.returncode is not None:
                        pytest.fail(
                            f"rendertrack serve exited ({self.process.returncode}):\n"
                            f"{self.log_tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        response = await client.get("/healthz")
                        if response.status_code == 200:
                            return response
                    await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """SIGINT, then SIGKILL to its process group after a while; keeps what was left unread
        on stdout."""
        process = self.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                self.stopped_by_sigint = True
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its own group: it and its workers
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        if process.stdout is not None:
            self.stdout_rest += await asyncio.wait_for(process.stdout.read(), STOP_TIMEOUT)

    async def close(self) -> None:
        """Stopped, and its workers killed should any outlive it."""
        await self.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


async def start_rendertrack(
    database_url: str,
    logs: Path,
    *arguments: str,
    cwd: Path = REPO,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """`rendertrack serve` on `port` (a free one by default), with `env` added to its
    environment; its log is a new file in `logs`. Stop it with `close`."""
    port = port or free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"serve-{port}-{len(list(logs.glob('serve-*.log')))}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *rendertrack_command(),
            "serve",
            "--port",
            str(port),
            *arguments,
            cwd=cwd,
            env={**environment(database_url), **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    return ServerProcess(process, port, log)


@contextlib.asynccontextmanager
async def rendertrack_serve(
    database_url: str,
    logs: Path,
    *arguments: str,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> AsyncIterator[ServerProcess]:
    server = await start_rendertrack(database_url, logs, *arguments, cwd=cwd, env=env)
    try:
        yield server
    finally:
        await server.close()
