"""The `rendertrack` command, run as a real subprocess the way a person or a script runs it.

Each test has a SQLite file of its own (RENDERTRACK_DATABASE_URL=sqlite:///abs/path), also on the
PostgreSQL run, except the one test that serves a PostgreSQL database with several workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.databases import fresh_postgres_database, postgres_server_url, selected_backend

RENDERTRACK = Path(sys.executable).parent / "rendertrack"
COMMAND_TIMEOUT = 60.0
STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 15.0
UNREACHABLE_POSTGRES = "postgres://postgres:s3cret-word@127.0.0.1:1/nowhere"
ENVIRONMENT_VARIABLES = (
    "RENDERTRACK_DATABASE_URL",
    "RENDERTRACK_HOST",
    "RENDERTRACK_PORT",
    "RENDERTRACK_ALLOWED_ORIGINS",
    "RENDERTRACK_ALLOWED_ROOTS",
    "RENDERTRACK_PUBLIC_INTROSPECTION",
)


def environment(database_url: str) -> dict[str, str]:
    """This process's environment without any RENDERTRACK_ setting but the database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")}
    env["RENDERTRACK_DATABASE_URL"] = database_url
    return env


def rendertrack(
    *args: str, database_url: str, cwd: Path, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RENDERTRACK), *args],
        env=environment(database_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *, one_line: bool = True) -> str:
    """A refusal: non-zero exit, nothing on stdout, no traceback; returns the error line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    if one_line:
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("rendertrack: error: "), result.stderr
    return lines[-1]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'rendertrack.sqlite3'}"


def listed_users(database_url: str, cwd: Path) -> list[list[str]]:
    result = rendertrack("users", "list", database_url=database_url, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


# --- users ---------------------------------------------------------------------------------


def test_users_create_prints_only_the_token_and_list_shows_the_user(
    sqlite_url: str, tmp_path: Path
) -> None:
    created = rendertrack(
        "users",
        "create",
        "--email",
        "Ada@Example.com",
        "--name",
        "Ada",
        "--role",
        "worker",
        database_url=sqlite_url,
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) == 1 and created.stdout.endswith("\n"), created.stdout
    assert lines[0].startswith("rt_") and len(lines[0]) > 20 and " " not in lines[0]
    assert "ada@example.com" in created.stderr and "WORKER" in created.stderr
    assert lines[0] not in created.stderr

    users = listed_users(sqlite_url, tmp_path)
    assert len(users) == 1
    assert users[0][1:] == ["ada@example.com", "WORKER", "active", "Ada"]


def test_a_malformed_email_is_refused_and_creates_nobody(sqlite_url: str, tmp_path: Path) -> None:
    result = rendertrack(
        "users", "create", "--email", "not-an-address", database_url=sqlite_url, cwd=tmp_path
    )
    assert "email" in assert_refused(result)
    assert listed_users(sqlite_url, tmp_path) == []


def test_an_unknown_role_is_refused_before_touching_the_database(
    sqlite_url: str, tmp_path: Path
) -> None:
    result = rendertrack(
        "users",
        "create",
        "--email",
        "bob@example.com",
        "--role",
        "overlord",
        database_url=sqlite_url,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "invalid choice: 'overlord'" in assert_refused(result, one_line=False)
    assert not (tmp_path / "db").exists()


def test_a_duplicate_email_is_refused_whatever_its_case(sqlite_url: str, tmp_path: Path) -> None:
    first = rendertrack(
        "users", "create", "--email", "ada@example.com", database_url=sqlite_url, cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    again = rendertrack(
        "users", "create", "--email", "ADA@example.COM", database_url=sqlite_url, cwd=tmp_path
    )
    assert "ada@example.com is already in use" in assert_refused(again)
    assert [user[1] for user in listed_users(sqlite_url, tmp_path)] == ["ada@example.com"]


@pytest.mark.parametrize(
    "args", [("users", "list"), ("users", "create", "--email", "ada@example.com"), ("migrate",)]
)
def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = rendertrack(*args, database_url=UNREACHABLE_POSTGRES, cwd=tmp_path)
    error = assert_refused(result)
    assert "127.0.0.1:1" in error
    assert "s3cret-word" not in result.stderr


def test_a_sqlite_path_whose_folder_cannot_be_created_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file\n")
    url = f"sqlite:///{blocker / 'sub' / 'rendertrack.sqlite3'}"
    for args in (("users", "create", "--email", "ada@example.com"), ("migrate",)):
        started = time.monotonic()
        result = rendertrack(*args, database_url=url, cwd=tmp_path)
        assert time.monotonic() - started < 30
        assert str(blocker) in assert_refused(result)
    assert blocker.read_text() == "a regular file\n"


def test_a_sqlite_folder_that_does_not_exist_yet_is_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'nested' / 'rendertrack.sqlite3'}"
    created = rendertrack(
        "users", "create", "--email", "ada@example.com", database_url=url, cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "new" / "nested" / "rendertrack.sqlite3").is_file()


# --- migrate -------------------------------------------------------------------------------


def test_migrate_applies_the_initial_migration_once(sqlite_url: str, tmp_path: Path) -> None:
    first = rendertrack("migrate", database_url=sqlite_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert "applied migration 0_" in first.stderr and "_init" in first.stderr

    database = sqlite_url.removeprefix("sqlite://")
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"users", "jobs"} <= tables

    second = rendertrack("migrate", database_url=sqlite_url, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    assert "up to date" in second.stderr and "applied migration" not in second.stderr


def test_migrate_check_finds_no_model_drift(sqlite_url: str, tmp_path: Path) -> None:
    result = rendertrack("migrate", "--check", database_url=sqlite_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "up to date" in result.stderr


# --- help ----------------------------------------------------------------------------------


def test_help_lists_the_commands_and_the_environment(tmp_path: Path) -> None:
    result = rendertrack("--help", database_url="sqlite:///unused", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("serve", "migrate", "users", *ENVIRONMENT_VARIABLES):
        assert word in result.stdout


def test_serve_help_lists_its_options_and_the_environment(tmp_path: Path) -> None:
    result = rendertrack("serve", "--help", database_url="sqlite:///unused", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("--host", "--port", "--workers", *ENVIRONMENT_VARIABLES):
        assert word in result.stdout


def test_serve_refuses_zero_workers(tmp_path: Path) -> None:
    result = rendertrack("serve", "--workers", "0", database_url="sqlite:///unused", cwd=tmp_path)
    assert result.returncode == 2
    assert "--workers" in assert_refused(result, one_line=False)


def test_serve_refuses_several_workers_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    result = rendertrack("serve", "--workers", "2", database_url=sqlite_url, cwd=tmp_path)
    assert "needs PostgreSQL" in assert_refused(result)
    assert not (tmp_path / "db").exists()  # refused before touching the database


# --- serve ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    stdout: Path
    stderr: Path
    stopped_by_sigint: bool = False

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()


def wait_until_healthy(server: Server) -> httpx.Response:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last: object = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"rendertrack serve exited early:\n{server.output()[1]}")
        try:
            response = httpx.get(f"{server.base_url}/healthz", timeout=2.0)
            if response.status_code == 200:
                return response
            last = response
        except httpx.TransportError as error:
            last = error
        time.sleep(0.1)
    pytest.fail(f"/healthz did not answer 200 within {STARTUP_TIMEOUT} s ({last!r})")


@contextmanager
def serving(database_url: str, scratch: Path, *args: str) -> Iterator[Server]:
    """`rendertrack serve` in a session of its own; stopped with SIGINT, killed if it lingers."""
    port = free_port()
    scratch.mkdir(parents=True, exist_ok=True)
    out, err = scratch / "stdout.txt", scratch / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [str(RENDERTRACK), "serve", "--port", str(port), *args],
            env=environment(database_url),
            cwd=scratch,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", out, err)
    try:
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=SHUTDOWN_TIMEOUT)
                server.stopped_by_sigint = True
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=SHUTDOWN_TIMEOUT)
        with suppress(ProcessLookupError):  # workers of --workers N, should any outlive it
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_serve_bootstraps_an_admin_once_and_serves_health_and_graphiql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'rendertrack.sqlite3'}"
    with serving(url, tmp_path / "first") as server:
        health = wait_until_healthy(server)
        assert health.json() == {"status": "ok"}
        page = httpx.get(f"{server.base_url}/graphql", headers={"Accept": "text/html"}, timeout=5.0)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "graphiql" in page.text.lower()
    assert server.stopped_by_sigint, "rendertrack serve ignored SIGINT and had to be killed"
    assert server.process.returncode is not None
    stdout, stderr = server.output()
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout should hold the token alone, got:\n{stdout}"
    assert lines[0].startswith("rt_") and " " not in lines[0]
    assert "Authorization: Bearer" in stderr and "ADMIN" in stderr
    assert "Traceback" not in stderr

    with serving(url, tmp_path / "second") as again:
        assert wait_until_healthy(again).json() == {"status": "ok"}
    assert again.stopped_by_sigint
    stdout, stderr = again.output()
    assert stdout == "", "a second start must not create another admin or print a token"
    assert "created the first user" not in stderr
    admins = [user for user in listed_users(url, tmp_path) if user[2] == "ADMIN"]
    assert len(admins) == 1


@pytest.mark.slow
@pytest.mark.postgres_only
def test_serve_with_two_workers_on_postgres(tmp_path: Path) -> None:
    if selected_backend() != "postgres":
        pytest.skip("serving PostgreSQL with several workers is tested on the PostgreSQL run")
    server_url = postgres_server_url()
    if server_url is None:
        pytest.skip("RENDERTRACK_TEST_POSTGRES_URL is not set")

    def serve_and_check(url: str) -> Server:
        with serving(url, tmp_path, "--workers", "2") as server:
            assert wait_until_healthy(server).json() == {"status": "ok"}
            for _ in range(10):  # several requests, whichever worker answers
                response = httpx.get(f"{server.base_url}/healthz", timeout=5.0)
                assert response.status_code == 200
        return server

    async def scenario() -> Server:
        async with fresh_postgres_database(server_url) as url:
            return await asyncio.to_thread(serve_and_check, url)

    server = asyncio.run(scenario())
    assert server.stopped_by_sigint
    stdout, stderr = server.output()
    assert len(stdout.splitlines()) == 1 and stdout.startswith("rt_"), stdout
    assert stderr.count("Started server process") == 2, stderr
    assert "Traceback" not in stderr
