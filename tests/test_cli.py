"""The `rendertrack` command, run as a real subprocess the way a person or a script runs it.

Each test has a SQLite file of its own (RENDERTRACK_DATABASE_URL=sqlite:///abs/path) whatever
the suite's database, so the module runs in the SQLite pass only: the PostgreSQL pass would repeat
it exactly. The commands on PostgreSQL: tests/test_jobs_cli.py (the suite's database) and
tests/test_many_processes.py (serving with several processes).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.databases import only_in_pass
from tests.live_server import TRANSPORT_WS
from tests.server_process import environment, rendertrack_serve

ONLY_IN_THE_SQLITE_PASS = only_in_pass(
    "sqlite", "the command runs on a SQLite file of the test's own, whatever the suite's database"
)
pytestmark = [ONLY_IN_THE_SQLITE_PASS]

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
    "RENDERTRACK_ADMIN_EMAIL",
)


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
    for word in ("--host", "--port", "--workers", "--admin-email", *ENVIRONMENT_VARIABLES):
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


@pytest.mark.slow
async def test_serve_bootstraps_an_admin_once_and_serves_health_and_graphiql(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'rendertrack.sqlite3'}"
    async with rendertrack_serve(url, tmp_path / "first", cwd=tmp_path) as server:
        token = await server.read_token()
        assert (await server.until_healthy()).json() == {"status": "ok"}
        async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as client:
            page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "graphiql" in page.text.lower()
        # Websockets as WEBSOCKET_OPTIONS say: a client offering permessage-deflate (as
        # browsers do) is answered without it (no zlib state kept per idle socket).
        async with connect(
            server.live.ws_url, subprotocols=[TRANSPORT_WS], compression="deflate"
        ) as socket:
            assert socket.request is not None and socket.response is not None
            assert "permessage-deflate" in socket.request.headers["Sec-WebSocket-Extensions"]
            assert "Sec-WebSocket-Extensions" not in socket.response.headers
        await server.stop()
    assert server.stopped_by_sigint, "rendertrack serve ignored SIGINT and had to be killed"
    assert server.stdout_rest == b"", "stdout must hold the token alone"
    log = server.log_text()
    assert "Authorization: Bearer" in log and "ADMIN" in log
    assert f"dashboard  {server.http_url}/" in log
    assert f"GraphiQL   {server.http_url}/graphql" in log
    assert "rendertrack users rotate-token --email admin@example.com" in log
    assert "Traceback" not in log
    assert [user[1] for user in listed_users(url, tmp_path)] == ["admin@example.com"]
    assert token.startswith("rt_")

    async with rendertrack_serve(url, tmp_path / "second", cwd=tmp_path) as again:
        assert (await again.until_healthy()).json() == {"status": "ok"}
        await again.stop()
    assert again.stopped_by_sigint
    assert again.stdout_rest == b"", "a second start must not create another admin or a token"
    assert "created the first user" not in again.log_text().lower()
    assert "Lost a token? 'rendertrack users rotate-token" in again.log_text()
    admins = [user for user in listed_users(url, tmp_path) if user[2] == "ADMIN"]
    assert len(admins) == 1


@pytest.mark.slow
async def test_a_second_server_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'rendertrack.sqlite3'}"
    async with rendertrack_serve(url, tmp_path / "first", cwd=tmp_path) as server:
        await server.until_healthy()
        second = await asyncio.to_thread(
            rendertrack, "serve", "--port", "1", database_url=url, cwd=tmp_path
        )
        message = assert_refused(second)
        assert "one server per SQLite file" in message and "PostgreSQL" in message
        await server.stop()
    # Once the first has stopped, the file is free again.
    async with rendertrack_serve(url, tmp_path / "again", cwd=tmp_path) as again:
        assert (await again.until_healthy()).json() == {"status": "ok"}
        await again.stop()
