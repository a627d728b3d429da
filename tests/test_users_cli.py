"""`rendertrack users` and the first ADMIN, run as real subprocesses against a SQLite file of the
test's own (in the SQLite pass only, like tests/test_cli.py): addresses on internal domains,
rotating a token, deactivating a user, and naming the first ADMIN.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from domain.errors import BadUserInput
from domain.users import hash_token, normalize_email
from tests import server_process
from tests.graphql_client import GraphQLClient, GraphQLResponse
from tests.server_process import ServerProcess, rendertrack_serve
from tests.test_cli import ONLY_IN_THE_SQLITE_PASS, assert_refused, listed_users, rendertrack

pytestmark = [ONLY_IN_THE_SQLITE_PASS]

INTERNAL_ADDRESSES = [
    ("render01@farm.local", "render01@farm.local"),
    ("ops@studio.internal", "ops@studio.internal"),
    ("a@localhost", "a@localhost"),
    ("Builder@Render-07", "builder@render-07"),  # a bare host name
    ("QA@Farm.Test", "qa@farm.test"),
]
MALFORMED_ADDRESSES = [
    "not-an-address",
    "a@@farm.local",
    "two words@farm.local",
    "dots..twice@farm.local",
    "@farm.local",
    "render01@",
    "render01@10.0.0.5",  # an IP address is not a host name
    "render01@farm..local",
]
ME = "{ me { email role isActive } }"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'rendertrack.sqlite3'}"


def create(url: str, cwd: Path, email: str, role: str = "worker") -> str:
    result = rendertrack(
        "users", "create", "--email", email, "--role", role, database_url=url, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def token_owner(url: str, token: str) -> tuple[str, bool] | None:
    """Whom the token authenticates as stored (email, active), read with sqlite3: what
    service.users.authenticate looks up, without opening Tortoise in this process."""
    with sqlite3.connect(url.removeprefix("sqlite://")) as connection:
        row = connection.execute(
            "SELECT email, is_active FROM users WHERE token_hash = ?", (hash_token(token),)
        ).fetchone()
    return None if row is None else (row[0], bool(row[1]))


def only_token(result: subprocess.CompletedProcess[str]) -> str:
    """The token a command printed: alone on stdout, never on stderr."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and result.stdout.endswith("\n"), result.stdout
    token = lines[0]
    assert token.startswith("rt_") and " " not in token
    assert token not in result.stderr
    return token


async def me(server: ServerProcess, token: str) -> GraphQLResponse:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        return await GraphQLClient(http)(ME, token=token)


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), INTERNAL_ADDRESSES)
def test_addresses_on_internal_domains_are_accepted_lower_cased(
    url: str, tmp_path: Path, given: str, stored: str
) -> None:
    token = create(url, tmp_path, given)
    assert token_owner(url, token) == (stored, True)
    assert [user[1] for user in listed_users(url, tmp_path)] == [stored]


@pytest.mark.parametrize("address", MALFORMED_ADDRESSES)
def test_a_malformed_address_is_refused_naming_it(url: str, tmp_path: Path, address: str) -> None:
    result = rendertrack("users", "create", "--email", address, database_url=url, cwd=tmp_path)
    error = assert_refused(result)
    assert repr(address) in error and "not a valid address" in error
    assert listed_users(url, tmp_path) == []


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        *INTERNAL_ADDRESSES,
        ("  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        ("worker+7@render-farm.studio.internal", "worker+7@render-farm.studio.internal"),
    ],
)
def test_the_rule_accepts_internal_names(given: str, stored: str) -> None:
    assert normalize_email(given) == stored


@pytest.mark.parametrize(
    "address",
    [*MALFORMED_ADDRESSES, "a@b.invalid", "a@x.onion", "a\x00@farm.local", "a@[10.0.0.5]"],
)
def test_the_rule_still_refuses_what_is_not_an_account_name(address: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        normalize_email(address)
    assert refused.value.errors[0].field == "email"
    assert repr(address) in refused.value.message


def test_a_long_refused_address_is_cut_in_the_message() -> None:
    with pytest.raises(BadUserInput) as refused:
        normalize_email("x" * 5000)
    assert len(refused.value.message) < 300 and "xxx..." in refused.value.message


# --- rotate-token and deactivate ----------------------------------------------------------------


def test_rotate_token_prints_a_new_token_and_the_old_one_stops_working(
    url: str, tmp_path: Path
) -> None:
    old = create(url, tmp_path, "render01@farm.local")
    result = rendertrack(
        "users", "rotate-token", "--email", "Render01@FARM.local", database_url=url, cwd=tmp_path
    )
    new = only_token(result)
    assert new != old
    assert "render01@farm.local" in result.stderr and "WORKER" in result.stderr
    assert token_owner(url, old) is None
    assert token_owner(url, new) == ("render01@farm.local", True)
    assert [user[1:4] for user in listed_users(url, tmp_path)] == [
        ["render01@farm.local", "WORKER", "active"]
    ]


def test_deactivate_stops_the_users_token_only(url: str, tmp_path: Path) -> None:
    token = create(url, tmp_path, "ops@studio.internal", "user")
    other = create(url, tmp_path, "render01@farm.local")
    result = rendertrack(
        "users", "deactivate", "--email", "OPS@studio.internal", database_url=url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "deactivated ops@studio.internal (USER)" in result.stderr
    assert token_owner(url, token) == ("ops@studio.internal", False)
    assert token_owner(url, other) == ("render01@farm.local", True)
    states = {user[1]: user[3] for user in listed_users(url, tmp_path)}
    assert states == {"ops@studio.internal": "deactivated", "render01@farm.local": "active"}


@pytest.mark.slow
def test_deactivating_twice_says_so_and_a_deactivated_users_new_token_is_refused(
    url: str, tmp_path: Path
) -> None:
    create(url, tmp_path, "ops@studio.internal", "user")
    for _ in range(2):
        result = rendertrack(
            "users", "deactivate", "--email", "ops@studio.internal", database_url=url, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
    assert "already" in result.stderr

    rotated = rendertrack(
        "users", "rotate-token", "--email", "ops@studio.internal", database_url=url, cwd=tmp_path
    )
    new = only_token(rotated)
    assert "deactivated" in rotated.stderr
    assert token_owner(url, new) == ("ops@studio.internal", False)


@pytest.mark.parametrize("command", ["rotate-token", "deactivate"])
def test_an_unknown_email_is_one_line_and_changes_nothing(
    url: str, tmp_path: Path, command: str
) -> None:
    token = create(url, tmp_path, "render01@farm.local")
    result = rendertrack(
        "users", command, "--email", "Ghost@Farm.Local", database_url=url, cwd=tmp_path
    )
    assert "ghost@farm.local was not found" in assert_refused(result)
    assert token_owner(url, token) == ("render01@farm.local", True)


@pytest.mark.parametrize("command", ["rotate-token", "deactivate"])
def test_a_malformed_email_is_one_line_naming_it(url: str, tmp_path: Path, command: str) -> None:
    result = rendertrack(
        "users", command, "--email", "not an address", database_url=url, cwd=tmp_path
    )
    assert "'not an address' is not a valid address" in assert_refused(result)


@pytest.mark.parametrize("command", ["rotate-token", "deactivate"])
def test_the_email_is_required(tmp_path: Path, command: str) -> None:
    result = rendertrack("users", command, database_url="sqlite:///unused", cwd=tmp_path)
    assert result.returncode == 2
    assert "--email" in assert_refused(result, one_line=False)


def test_users_help_lists_the_new_commands(tmp_path: Path) -> None:
    result = rendertrack("users", "--help", database_url="sqlite:///unused", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("create", "list", "rotate-token", "deactivate"):
        assert word in result.stdout


@pytest.mark.slow
async def test_a_running_server_refuses_a_rotated_or_deactivated_token_at_once(
    url: str, tmp_path: Path
) -> None:
    async with rendertrack_serve(url, tmp_path / "logs", cwd=tmp_path) as server:
        admin = await server.read_token()
        await server.until_healthy()
        worker = create(url, tmp_path, "render01@farm.local")
        assert (await me(server, worker)).data["me"]["email"] == "render01@farm.local"

        rotated = rendertrack(
            "users",
            "rotate-token",
            "--email",
            "render01@farm.local",
            database_url=url,
            cwd=tmp_path,
        )
        new = only_token(rotated)
        assert (await me(server, worker)).codes == ["UNAUTHENTICATED"]
        assert (await me(server, new)).data["me"] == {
            "email": "render01@farm.local",
            "role": "WORKER",
            "isActive": True,
        }

        deactivated = rendertrack(
            "users", "deactivate", "--email", "render01@farm.local", database_url=url, cwd=tmp_path
        )
        assert deactivated.returncode == 0, deactivated.stderr
        assert (await me(server, new)).codes == ["UNAUTHENTICATED"]
        assert (await me(server, admin)).data["me"]["email"] == "admin@example.com"
        await server.stop()
    assert "Traceback" not in server.log_text()


# --- the first ADMIN ---------------------------------------------------------------------------


def with_admin_email_variable(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """rendertrack_serve's subprocesses get RENDERTRACK_ADMIN_EMAIL (its environment() keeps
    only the database URL of this process's RENDERTRACK_ variables)."""
    plain = server_process.environment

    def environment(database_url: str) -> dict[str, str]:
        return {**plain(database_url), "RENDERTRACK_ADMIN_EMAIL": address}

    monkeypatch.setattr(server_process, "environment", environment)


async def first_start(url: str, logs: Path, cwd: Path, *arguments: str) -> tuple[str, str]:
    """Serves once on an empty database: (the token printed, the server's log)."""
    async with rendertrack_serve(url, logs, *arguments, cwd=cwd) as server:
        token = await server.read_token()
        await server.until_healthy()
        response = await me(server, token)
        await server.stop()
    assert server.stdout_rest == b"", "stdout must hold the token alone"
    assert response.errors == [], response.errors
    return response.data["me"]["email"], server.log_text()


async def later_start(url: str, logs: Path, cwd: Path, *arguments: str) -> str:
    """Serves on a database that has users: nothing on stdout; returns the log."""
    async with rendertrack_serve(url, logs, *arguments, cwd=cwd) as server:
        await server.until_healthy()
        await server.stop()
    assert server.stdout_rest == b"", "a later start must not create an ADMIN or print a token"
    return server.log_text()


@pytest.mark.slow
async def test_admin_email_names_the_first_admin_on_first_start_only(
    url: str, tmp_path: Path
) -> None:
    email, log = await first_start(
        url, tmp_path / "first", tmp_path, "--admin-email", "Boss@Studio.Internal"
    )
    assert email == "boss@studio.internal"
    assert "Created the first user, boss@studio.internal (ADMIN)" in log

    log = await later_start(url, tmp_path / "second", tmp_path, "--admin-email", "other@farm.local")
    assert "created the first user" not in log.lower()
    assert "has users already" in log and "other@farm.local" in log
    assert [user[1:3] for user in listed_users(url, tmp_path)] == [
        ["boss@studio.internal", "ADMIN"]
    ]


@pytest.mark.slow
async def test_the_admin_email_variable_names_the_first_admin_and_the_option_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_admin_email_variable(monkeypatch, "Ops@Farm.Local")
    first = f"sqlite:///{tmp_path / 'first' / 'rendertrack.sqlite3'}"
    email, _ = await first_start(first, tmp_path / "logs-1", tmp_path)
    assert email == "ops@farm.local"
    log = await later_start(first, tmp_path / "logs-2", tmp_path)
    assert "created the first user" not in log.lower()
    assert [user[1:3] for user in listed_users(first, tmp_path)] == [["ops@farm.local", "ADMIN"]]

    both = f"sqlite:///{tmp_path / 'both' / 'rendertrack.sqlite3'}"
    email, _ = await first_start(
        both, tmp_path / "logs-3", tmp_path, "--admin-email", "a@localhost"
    )
    assert email == "a@localhost"


@pytest.mark.slow
async def test_without_a_name_the_first_admin_stays_admin_at_example_com(
    url: str, tmp_path: Path
) -> None:
    email, _ = await first_start(url, tmp_path / "logs", tmp_path)
    assert email == "admin@example.com"


def test_a_malformed_admin_email_is_refused_before_touching_the_database(
    url: str, tmp_path: Path
) -> None:
    result = rendertrack("serve", "--admin-email", "boss at studio", database_url=url, cwd=tmp_path)
    error = assert_refused(result)
    assert "--admin-email" in error and "'boss at studio' is not a valid address" in error
    assert not (tmp_path / "db").exists()


def test_a_malformed_admin_email_variable_is_refused_naming_the_variable(
    url: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*server_process.rendertrack_command(), "serve"],
        env={**server_process.environment(url), "RENDERTRACK_ADMIN_EMAIL": "boss@"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    error = assert_refused(result)
    assert "RENDERTRACK_ADMIN_EMAIL" in error and "'boss@'" in error
    assert not (tmp_path / "db").exists()
