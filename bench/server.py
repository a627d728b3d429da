"""A real rendertrack server for a scenario: a fresh database, accounts, `rendertrack serve` in a
process of its own, and what can be read about that process from outside (CPU, RSS, sockets).

    async with scratch_database("postgres") as database:     # or "sqlite"
        server = RenderTrack(database)
        accounts = await server.create_accounts({"worker": "worker", "owner": "user"})
        async with server.running():                          # waits until /readyz answers
            ...  # load from another process (bench/load.py, bench/fanout_client.py)

PostgreSQL: a database created on $RENDERTRACK_BENCH_POSTGRES_URL's server and dropped after
(testkit/postgres.py). SQLite: a file in a temporary folder. Accounts come from `rendertrack
users create` (its token on stdout, its id on stderr), the first one alone (it migrates the
database), the others side by side. The server is `rendertrack serve` through bench/serve.py,
which adds a count of its SQL statements when the scenario reports them (`count_statements`);
its log goes to a file in the scratch folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import ROOT, postgres_reachable, postgres_server
from testkit.postgres import fresh_postgres_database

START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
LOG_PROBLEM = re.compile(r"\b(ERROR|CRITICAL|WARNING|Traceback)\b")
# Every scenario's server: thousands of websockets for one user, and jobs that stay RENDERING.
BENCH_ENVIRONMENT = {
    "RENDERTRACK_MAX_CONNECTIONS_PER_USER": "5000",
    "RENDERTRACK_STALL_TIMEOUT": "604800",
}


class Unavailable(RuntimeError):
    """The database the scenario needs does not answer."""


@dataclass(frozen=True)
class Database:
    kind: str  # "postgres" or "sqlite"
    url: str  # as rendertrack reads it (RENDERTRACK_DATABASE_URL)
    folder: Path  # scratch files: logs, results of the load processes

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"


@contextlib.asynccontextmanager
async def scratch_database(kind: str) -> AsyncIterator[Database]:
    """An empty database of `kind` for one server, gone afterwards. Raises Unavailable when
    PostgreSQL does not answer."""
    with tempfile.TemporaryDirectory(prefix=f"rendertrack_bench_{kind}_") as directory:
        folder = Path(directory)
        if kind == "sqlite":
            yield Database(kind, f"sqlite://{folder / 'bench.sqlite3'}", folder)
            return
        if kind != "postgres":
            raise ValueError(kind)
        server = postgres_server()
        if not await postgres_reachable(server):
            raise Unavailable(f"PostgreSQL at {server} does not answer")
        async with fresh_postgres_database(server, prefix="rendertrack_bench_") as url:
            yield Database(kind, url, folder)


@dataclass(frozen=True)
class Account:
    email: str
    role: str
    id: str
    token: str


def rendertrack_command() -> list[str]:
    """`rendertrack` as installed beside this Python, else the same entry point as a module."""
    script = Path(sys.executable).parent / "rendertrack"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# A process seen from outside (/proc)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB; 0 when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's worker processes with --workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def open_sockets(pid: int) -> int:
    """Sockets a process holds open (its listening one included)."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(entry).startswith("socket:"):
                    count += 1
    return count


async def stop_process(process: asyncio.subprocess.Process | None, polite: bool = True) -> None:
    """SIGINT (uvicorn's graceful stop), then SIGKILL to its process group (it runs in a session
    of its own, started here) if it lingers."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if polite:
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                return
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# The server


class RenderTrack:
    """`rendertrack serve` on `database`, one process or `workers`."""

    def __init__(
        self,
        database: Database,
        *,
        workers: int = 1,
        environment: dict[str, str] | None = None,
        profile: Path | None = None,
        name: str = "server",
        count_statements: bool = False,
    ) -> None:
        self.database = database
        # Counting costs the server a log record per statement: only where a scenario reports it.
        self.count_statements = count_statements
        self.workers = workers
        self.profile = profile
        self.port = free_port()
        self.log = database.folder / f"{name}.log"
        self.statements_file = database.folder / f"{name}.statements"
        self.environment = {**BENCH_ENVIRONMENT, **(environment or {})}
        self.process: asyncio.subprocess.Process | None = None
        self.accounts: dict[str, Account] = {}

    # -- URLs

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    # -- accounts

    def _env(self) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")
        }
        env.update(
            {
                **self.environment,
                "RENDERTRACK_DATABASE_URL": self.database.url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    async def create_account(self, name: str, role: str) -> Account:
        """`rendertrack users create --email <name>@bench.example --role <role>`."""
        email = f"{name}@bench.example"
        process = await asyncio.create_subprocess_exec(
            *rendertrack_command(),
            "users",
            "create",
            "--email",
            email,
            "--name",
            name,
            "--role",
            role,
            cwd=ROOT,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await process.communicate()
        said = err.decode(errors="replace")
        found = re.search(r", id (\S+)", said)
        if process.returncode != 0 or found is None:
            raise RuntimeError(f"rendertrack users create {email} failed: {said.strip()}")
        account = Account(email, role, found.group(1), out.decode().strip())
        self.accounts[name] = account
        return account

    async def create_accounts(self, roles: dict[str, str]) -> dict[str, Account]:
        """One account per name, with its role (admin, user or worker). On PostgreSQL side by
        side (migrations take a lock: the first migrates, the others wait for it); on SQLite one
        after the other (one writer)."""
        if self.database.is_postgres:
            await asyncio.gather(*(self.create_account(name, role) for name, role in roles.items()))
        else:
            for name, role in roles.items():
                await self.create_account(name, role)
        return {name: self.accounts[name] for name in roles}

    # -- the process

    async def start(self) -> None:
        profiler = [] if self.profile is None else ["-m", "cProfile", "-o", str(self.profile)]
        env = self._env()
        if self.count_statements:
            env["BENCH_STATEMENTS_FILE"] = str(self.statements_file)
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *profiler,
                "-m",
                "bench.serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        await self.wait_ready()

    async def wait_ready(self) -> None:
        """GET /readyz answers 200 (the database answers, the bus LISTENs), three times in a row
        (with several processes, any of them may answer)."""
        deadline = time.monotonic() + START_TIMEOUT
        streak = 0
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise RuntimeError(f"the server exited:\n{self.log_text()[-3000:]}")
                ok = False
                with contextlib.suppress(httpx.HTTPError):
                    ok = (await client.get(f"{self.base_url}/readyz")).status_code == 200
                streak = streak + 1 if ok else 0
                if streak >= 3 * self.workers:
                    return
                await asyncio.sleep(0.05 if ok else 0.2)
        raise RuntimeError(f"the server was not ready in {START_TIMEOUT} s")

    async def stop(self) -> None:
        await stop_process(self.process)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RenderTrack]:
        try:
            await self.start()
            yield self
        finally:
            await self.stop()

    # -- what can be seen from outside

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def cpu(self) -> float:
        """CPU seconds of the server's processes so far."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids())

    def sockets(self) -> int:
        return sum(open_sockets(pid) for pid in self.pids())

    async def statements(self) -> int | None:
        """SQL statements sent so far (one process only, counted: None otherwise)."""
        if self.workers > 1 or not self.count_statements:
            return None
        await asyncio.sleep(0.2)  # the server's writer thread looks every 50 ms
        try:
            return int(self.statements_file.read_text())
        except (OSError, ValueError):
            return None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if LOG_PROBLEM.search(line)][:20]
