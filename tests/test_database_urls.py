"""One reading of the database URL: Tortoise's pool takes the URL as written, and the connections
rendertrack opens beside it (the migration lock, the LISTEN connection) take
`models.config.asyncpg_connect_args(url)`, which reaches the same database the same way.

The first half reads URLs without a database. The second half runs on PostgreSQL (it skips on
SQLite): `rendertrack migrate` and `rendertrack serve` as real processes, and the LISTEN bus, on
URLs that carry pool options.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.context import TortoiseContext

from domain.events import JobEventKind
from domain.policy import Actor
from domain.status import JobStatus
from models.config import asyncpg_connect_args, asyncpg_dsn, keep_session, tortoise_config
from service import jobs
from service.bus import PostgresBus, create_bus
from service.bus.postgres import APPLICATION_NAME, listen_dsn
from service.events import set_publisher
from tests.databases import (
    SKIP_POSTGRES_REASON,
    fresh_postgres_database,
    postgres_server_url,
    running_in_ci,
    selected_backend,
)
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient
from tests.server_process import rendertrack_serve
from tests.test_cli import assert_refused, rendertrack

WAIT = 10.0
ADDRESS = ("host", "port", "user", "password", "database")
POOL_OPTIONS = "?maxsize=20&minsize=1"

# --- the translation, without a database -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://postgres@127.0.0.1:5432/db?maxsize=20",
            {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "db"},
        ),
        (
            "postgres://postgres@127.0.0.1:5432/db?minsize=2&maxsize=20",
            {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "db"},
        ),
        (
            "postgres://postgres@127.0.0.1:5432/db?ssl=true",
            {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "db", "ssl": True},
        ),
        (
            "postgres://postgres@127.0.0.1:5432/db?statement_cache_size=0",
            {
                "host": "127.0.0.1",
                "port": 5432,
                "user": "postgres",
                "database": "db",
                "statement_cache_size": 0,
            },
        ),
        # No port: Tortoise's default. A password, a postgresql:// scheme.
        (
            "postgresql://render:s3cret@db.farm.local/rendertrack",
            {
                "host": "db.farm.local",
                "port": 5432,
                "user": "render",
                "password": "s3cret",
                "database": "rendertrack",
            },
        ),
        # Every pool option at once is dropped; the connection's options are typed.
        (
            "postgres://u:p@h:6543/d?min_size=1&max_size=9&max_queries=500"
            "&max_inactive_connection_lifetime=30.5&timeout=7&command_timeout=2.5"
            "&max_cached_statement_lifetime=60&max_cacheable_statement_size=1024",
            {
                "host": "h",
                "port": 6543,
                "user": "u",
                "password": "p",
                "database": "d",
                "timeout": 7,
                "command_timeout": 2.5,
                "max_cached_statement_lifetime": 60,
                "max_cacheable_statement_size": 1024,
            },
        ),
        # schema and application_name are server settings, as Tortoise sends them.
        (
            "postgres://u@h/d?schema=render&application_name=farm",
            {
                "host": "h",
                "port": 5432,
                "user": "u",
                "database": "d",
                "server_settings": {"search_path": "render", "application_name": "farm"},
            },
        ),
        # libpq's sslmode is asyncpg's ssl mode; the last of a repeated option wins (Tortoise's).
        (
            "postgres://u@h/d?sslmode=verify-ca&maxsize=3&maxsize=4",
            {"host": "h", "port": 5432, "user": "u", "database": "d", "ssl": "verify-ca"},
        ),
        # A Unix socket's directory, given in the query; no user: asyncpg's default (PGUSER).
        (
            "postgres:///rendertrack?host=/var/run/postgresql",
            {"host": "/var/run/postgresql", "port": 5432, "database": "rendertrack"},
        ),
        # IPv6, and special characters in the password (quoted, and a bare @ too).
        (
            "postgres://u:p%40ss%3Aw%2Fd@[::1]:6543/d",
            {"host": "::1", "port": 6543, "user": "u", "password": "p@ss:w/d", "database": "d"},
        ),
        (
            "asyncpg://u:p@ss@h:5432/d",
            {"host": "h", "port": 5432, "user": "u", "password": "p@ss", "database": "d"},
        ),
    ],
)
def test_the_url_becomes_what_asyncpg_connect_takes(url: str, expected: dict) -> None:
    assert asyncpg_connect_args(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgres://postgres@127.0.0.1:5432/db?maxsize=20",
        "postgres://u:p%40ss%3Aw%2Fd@[::1]:6543/d%20x?ssl=true&statement_cache_size=0",
        "postgres://u:p@ss@h/d?schema=s",
        "postgres:///rendertrack?host=/var/run/postgresql&minsize=2",
        "postgresql://render@db.farm.local/rendertrack?sslmode=require&timeout=5",
    ],
)
def test_the_connection_goes_where_tortoises_pool_goes(url: str) -> None:
    """Host, port, user, password and database are Tortoise's own reading of the URL."""
    tortoise = expand_db_url(url)["credentials"]
    arguments = asyncpg_connect_args(url)
    for name in ADDRESS:
        assert arguments.get(name) == tortoise.get(name), name


@pytest.mark.parametrize(
    "url", [f"postgres://u@h/d{POOL_OPTIONS}", "postgres://u@h/d?ssl=true&timeout=5"]
)
def test_tortoise_is_given_its_own_reading_of_the_url_and_a_pool_that_keeps_sessions(
    url: str,
) -> None:
    given = tortoise_config(url)["connections"]["default"]
    reset = given["credentials"].pop("reset")
    assert given == expand_db_url(url)
    assert reset is keep_session


def test_tortoise_is_given_a_sqlite_url_as_written(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'r.sqlite3'}"
    assert tortoise_config(url)["connections"]["default"] == url


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("foo=bar", ["foo", "unknown", "maxsize"]),
        ("maxsize=5&search_path=x&bogus=1", ["bogus, search_path", "are unknown"]),
        ("maxsize=abc", ["maxsize", "whole number", "'abc'"]),
        ("timeout=1.5", ["timeout", "whole number"]),
        ("command_timeout=soon", ["command_timeout", "a number"]),
        ("ssl=false", ["ssl=false", "SSL on", "leave ssl out"]),
        ("ssl=0", ["ssl=0", "SSL on"]),
        ("ssl=maybe", ["ssl takes true", "'maybe'"]),
        ("sslmode=sometimes", ["sslmode", "verify-full", "'sometimes'"]),
        ("ssl=true&sslmode=require", ["ssl and sslmode"]),
        ("port=abc", ["port", "whole number"]),
    ],
)
def test_an_option_that_cannot_work_is_refused_by_name(query: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as refused:
        asyncpg_connect_args(f"postgres://u:p@h/d?{query}")
    for word in words:
        assert word in str(refused.value)


def test_a_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        asyncpg_connect_args("sqlite://data/rendertrack.sqlite3")
    with pytest.raises(ValueError, match="cannot read the database URL"):
        asyncpg_connect_args("postgres://u@h:notaport/d")


# Every option the function takes, at once.
EVERY_OPTION = (
    "postgres://u@h/d?minsize=2&maxsize=20&min_size=1&max_size=3&max_queries=4"
    "&max_inactive_connection_lifetime=2.5&ssl=true&timeout=5&command_timeout=3"
    "&statement_cache_size=0&max_cached_statement_lifetime=1&max_cacheable_statement_size=9"
    "&schema=s&application_name=a&passfile=/x&target_session_attrs=any&krbsrvname=k&gsslib=gssapi"
)


def parameters(function: object) -> set[str]:
    return set(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_every_option_taken_is_one_tortoises_pool_can_pass_on() -> None:
    """Tortoise's client keeps what it does not use itself for asyncpg.create_pool, which
    passes on to asyncpg.connect what it does not use: every option the function takes is one
    of theirs, and what the function returns is what asyncpg.connect takes."""
    client = AsyncpgDBClient(
        connection_name="default", **expand_db_url(EVERY_OPTION)["credentials"]
    )
    assert set(client.extra) <= parameters(asyncpg.create_pool) | parameters(asyncpg.connect)
    assert (client.pool_minsize, client.pool_maxsize) == (2, 20)
    assert (client.schema, client.application_name) == ("s", "a")
    arguments = asyncpg_connect_args(EVERY_OPTION)
    assert set(arguments) <= parameters(asyncpg.connect)
    assert set(arguments) >= set(client.extra) - parameters(asyncpg.create_pool)
    assert arguments["server_settings"] == {"search_path": "s", "application_name": "a"}


def test_sslmode_is_asyncpgs_but_tortoise_cannot_pass_it_on() -> None:
    """Why the README says ssl=true: Tortoise hands sslmode to asyncpg.connect as an argument
    it does not have. The plain connections take it (as asyncpg's ssl mode) all the same."""
    client = AsyncpgDBClient(
        connection_name="default",
        **expand_db_url("postgres://u@h/d?sslmode=require")["credentials"],
    )
    assert "sslmode" in client.extra and "sslmode" not in parameters(asyncpg.connect)
    assert asyncpg_connect_args("postgres://u@h/d?sslmode=require")["ssl"] == "require"


def test_the_dsn_form_carries_what_a_dsn_can_say() -> None:
    # What the bus tests rely on: pool options out, sslmode kept.
    url = "postgres://u:p@h:5432/d?minsize=1&maxsize=5&sslmode=require"
    assert listen_dsn(url) == asyncpg_dsn(url) == "postgresql://u:p@h:5432/d?sslmode=require"
    assert asyncpg_dsn("postgres://u:p%40ss@[::1]/d?schema=s") == (
        "postgresql://u:p%40ss@[::1]:5432/d?search_path=s"
    )
    assert asyncpg_dsn("postgres:///d?host=/run/pg") == (
        "postgresql:///d?host=%2Frun%2Fpg&port=5432"
    )
    for url in ("postgres://u@h/d?ssl=true", "postgres://u@h/d?statement_cache_size=0"):
        with pytest.raises(ValueError, match="asyncpg_connect_args"):
            asyncpg_dsn(url)


# --- for real, on PostgreSQL -----------------------------------------------------------------


@pytest.fixture
def postgres_server() -> str:
    """The PostgreSQL server's URL; skips before any database work on SQLite runs."""
    if selected_backend() != "postgres":
        pytest.skip("PostgreSQL URLs are tested on the PostgreSQL run (RENDERTRACK_TEST_DATABASE)")
    server_url = postgres_server_url()
    if server_url is None:
        if running_in_ci():
            pytest.fail(f"CI=true needs PostgreSQL: {SKIP_POSTGRES_REASON}")
        pytest.skip(SKIP_POSTGRES_REASON)
    return server_url


@pytest_asyncio.fixture
async def empty_database(postgres_server: str) -> AsyncIterator[str]:
    async with fresh_postgres_database(postgres_server) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        "?maxsize=20",
        "?minsize=2&maxsize=20",
        "?statement_cache_size=0",
        "?maxsize=20&minsize=1&timeout=10&schema=public&application_name=rendertrack-test",
    ],
)
def test_migrate_works_with_pool_options(empty_database: str, tmp_path: Path, options: str) -> None:
    url = empty_database + options
    first = rendertrack("migrate", database_url=url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied migration 0_" in first.stderr and first.stdout == ""
    again = rendertrack("migrate", database_url=url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stderr


@pytest.mark.slow
def test_a_bad_option_is_one_line_before_any_connection(
    empty_database: str, tmp_path: Path
) -> None:
    for query, word in (("?maxsize=abc", "maxsize"), ("?pool=big", "pool"), ("?ssl=no", "ssl")):
        result = rendertrack("migrate", database_url=empty_database + query, cwd=tmp_path)
        assert word in assert_refused(result)


@pytest.mark.slow
async def test_serve_works_with_pool_options(empty_database: str, tmp_path: Path) -> None:
    url = empty_database + POOL_OPTIONS
    async with rendertrack_serve(url, tmp_path / "logs", cwd=tmp_path) as server:
        token = await server.read_token()
        assert (await server.until_healthy()).json() == {"status": "ok"}
        async with httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as http:
            me = await GraphQLClient(http)("{ me { email role } }", token=token)
        assert me.errors == [] and me.data == {
            "me": {"email": "admin@example.com", "role": "ADMIN"}
        }
        await server.stop()
    assert server.stopped_by_sigint
    log = server.log_text()
    assert "Traceback" not in log and "unrecognized configuration parameter" not in log
    assert "Listening on rendertrack_job_events" in log and "Cannot LISTEN" not in log


async def test_ssl_does_the_same_on_both_connections(postgres_server: str) -> None:
    """With ssl=true the plain connection either reaches the server or fails exactly as
    Tortoise's pool does (this server may or may not speak SSL)."""
    url = postgres_server + "?ssl=true&maxsize=2"
    plain_error: BaseException | None = None
    try:
        connection = await asyncpg.connect(**asyncpg_connect_args(url))
        await connection.close()
    except Exception as error:
        plain_error = error
    pool_error: BaseException | None = None
    try:
        async with TortoiseContext() as context:
            await context.init(config=tortoise_config(url))
            await context.connections.get("default").execute_query("SELECT 1")
    except Exception as error:
        pool_error = error
    assert type(plain_error) is type(pool_error), (plain_error, pool_error)
    assert str(plain_error) == str(pool_error)


async def test_the_listen_bus_delivers_with_pool_options(
    postgres_server: str, db: str, owner: Actor
) -> None:
    """The app's bus, built from a URL with pool options, LISTENs and delivers an event that a
    use case's transaction NOTIFYed."""
    url = db + POOL_OPTIONS + "&application_name=not-the-bus"

    bus = create_bus(url)
    assert isinstance(bus, PostgresBus)
    await bus.start()
    previous = set_publisher(bus)
    try:
        assert bus.listen_backend_pid is not None, "the LISTEN connection did not open"
        async with bus.subscribe(lambda event: event.user_id == owner.id) as subscription:
            job = await jobs.submit_job(owner, valid_submission())
            received = []
            async with asyncio.timeout(WAIT):
                while len(received) < 3:
                    received.append(await anext(subscription))
        assert [(d.event.kind, d.event.status) for d in received] == [
            (JobEventKind.CREATED, JobStatus.PENDING),
            (JobEventKind.STATUS_CHANGED, JobStatus.VALIDATING),
            (JobEventKind.STATUS_CHANGED, JobStatus.QUEUED),
        ]
        assert all(d.event.job_id == job.id for d in received)
        # The bus names its own connection, whatever the URL's application_name says.
        admin = await asyncpg.connect(**asyncpg_connect_args(url))
        try:
            name = await admin.fetchval(
                "SELECT application_name FROM pg_stat_activity WHERE pid = $1",
                bus.listen_backend_pid,
            )
        finally:
            await admin.close()
        assert name == APPLICATION_NAME
    finally:
        set_publisher(previous)
        with contextlib.suppress(Exception):
            await bus.stop()
