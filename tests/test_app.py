"""The Starlette app in-process: /healthz and the GraphiQL page, through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from tortoise import connections

from app.factory import create_app
from app.migrations import apply_migrations
from app.settings import Settings
from domain.status import JobStatus
from models import Job
from service import clock, jobs, users
from tests.databases import fresh_postgres_database, postgres_server_url
from tests.factories import valid_submission
from tests.live_server import TRANSPORT_WS, closed_within, open_socket, serve

UNREACHABLE_POSTGRES = "postgres://postgres@127.0.0.1:1/nowhere"
LIFESPAN_TIMEOUT = 20.0
NOT_ON_SQLITE = (
    "a SQLite file, once open, answers as long as the process lives: an unreachable database "
    "is a server's failure, tested on the PostgreSQL run"
)


@asynccontextmanager
async def client_of(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as client:
        yield client


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered (it opens the database itself), and a client."""
    # asyncio.timeout, not wait_for: the lifespan must enter and exit in this task's context.
    lifespan = app.router.lifespan_context(app)
    async with asyncio.timeout(LIFESPAN_TIMEOUT):
        await lifespan.__aenter__()
    try:
        async with client_of(app) as client:
            yield client
    finally:
        async with asyncio.timeout(LIFESPAN_TIMEOUT):
            await lifespan.__aexit__(None, None, None)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == "unavailable"
    assert "Traceback" not in response.text


@dataclass
class Outage:
    """A migrated PostgreSQL database of the test's own, which `begin` makes refuse every
    connection (and drops the open ones) and `end` opens again."""

    url: str
    admin: asyncpg.Connection

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    async def begin(self, sparing: int | None = None) -> None:
        """Refuses new connections and drops the open ones, all but the backend `sparing`."""
        await self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        await self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM $2",
            self.name,
            sparing,
        )

    async def end(self) -> None:
        await self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@asynccontextmanager
async def outage_ready(backend: str) -> AsyncIterator[Outage]:
    if backend != "postgres":
        pytest.skip(NOT_ON_SQLITE)
    server_url = postgres_server_url()
    assert server_url is not None
    async with fresh_postgres_database(server_url) as url:
        await apply_migrations(url)
        admin = await asyncpg.connect("postgresql://" + server_url.split("://", 1)[1])
        outage = Outage(url, admin)
        try:
            yield outage
        finally:
            await outage.end()
            await admin.close()


async def test_healthz_answers_ok_when_the_database_answers(db: str) -> None:
    app = create_app(Settings(database_url=db), manage_database=False)
    async with client_of(app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_answers_ok_with_the_app_opening_the_database_itself(
    database_url: str,
) -> None:
    app = create_app(Settings(database_url=database_url))
    async with running(app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_the_database_check_is_503_when_the_database_server_cannot_be_reached(
    backend: str,
) -> None:
    if backend != "postgres":
        pytest.skip(NOT_ON_SQLITE)
    app = create_app(Settings(database_url=UNREACHABLE_POSTGRES))
    async with running(app) as client:
        for _ in range(2):  # a failed check leaves nothing behind that blocks the next one
            response = await asyncio.wait_for(client.get("/api/v1/health"), timeout=10)
            assert_unavailable(response)


async def test_the_database_check_follows_the_database_going_away_and_coming_back(
    backend: str,
) -> None:
    async with (
        outage_ready(backend) as outage,
        running(create_app(Settings(database_url=outage.url))) as client,
    ):
        assert (await client.get("/api/v1/health")).status_code == 200

        await outage.begin()
        for _ in range(2):
            response = await asyncio.wait_for(client.get("/api/v1/health"), timeout=10)
            assert_unavailable(response)

        await outage.end()
        response = await asyncio.wait_for(client.get("/api/v1/health"), timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_the_app_refuses_to_start_on_a_sqlite_path_it_cannot_use(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file\n")
    app = create_app(Settings(database_url=f"sqlite:///{blocker / 'rendertrack.sqlite3'}"))
    with pytest.raises(ValueError, match="not-a-folder"):
        async with running(app):
            pass


async def test_graphql_answers_a_browser_with_the_graphiql_page(db: str) -> None:
    app = create_app(Settings(database_url=db), manage_database=False)
    async with client_of(app) as client:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_graphql_with_a_token_is_a_coded_503_while_the_database_is_away(
    backend: str,
) -> None:
    async with (
        outage_ready(backend) as outage,
        running(create_app(Settings(database_url=outage.url))) as client,
    ):
        await outage.begin()
        response = await asyncio.wait_for(
            client.post(
                "/graphql",
                json={"query": "{ me { email } }"},
                headers={"Authorization": "Bearer rt_" + "x" * 43},
            ),
            timeout=10,
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "Traceback" not in response.text


async def test_a_websocket_whose_token_cannot_be_checked_is_told_to_come_back_later(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        outage_ready(backend) as outage,
        serve(create_app(Settings(database_url=outage.url))) as live,
    ):
        await outage.begin()
        async with open_socket(live, TRANSPORT_WS) as socket:
            await socket.send(
                {"type": "connection_init", "payload": {"Authorization": "Bearer rt_" + "x" * 43}}
            )
            code, reason = await closed_within(socket, 10)
        await outage.end()
    # 1013 "try again later", not 4403: a client keeps its token and reconnects.
    assert code == 1013 and "database" in reason
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def test_an_outage_is_logged_as_warnings_and_the_duties_resume_after_it(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database is away the sweeper says so in one line per round, without a
    traceback and not as an error; once it is back its rounds act again: a job past its
    deadline is cancelled, and nothing more is logged."""
    async with outage_ready(backend) as outage:
        settings = Settings(database_url=outage.url, sweep_interval_seconds=0.05)
        async with running(create_app(settings)):
            issued = await users.create_user("owner@example.com")
            deadline = clock.now() + timedelta(seconds=30)
            job = await jobs.submit_job(
                users.actor_of(issued.user), valid_submission(auto_cancel_at=deadline)
            )
            await outage.begin()
            async with asyncio.timeout(10):
                while not any(unreachable(record) for record in caplog.records):
                    await asyncio.sleep(0.02)
            during = list(caplog.records)
            await outage.end()
            caplog.clear()
            clock.advance(31)
            async with asyncio.timeout(10):  # a round after the outage cancels it
                while (await Job.get(id=job.id)).status != JobStatus.CANCELLED:
                    await asyncio.sleep(0.05)
    assert not [record.getMessage() for record in during if record.levelno >= logging.ERROR]
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def unreachable(record: logging.LogRecord) -> bool:
    return (
        record.name == "service.sweeper"
        and record.levelno == logging.WARNING
        and "the database cannot be reached" in record.getMessage()
        and record.exc_info is None
    )


async def test_the_nexrender_api_is_a_coded_503_while_the_database_is_away(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A Nexrender worker's pickup during an outage: 503 with when to try again, as JSON, and a
    warning on the server, not a 500 and a traceback."""
    async with (
        outage_ready(backend) as outage,
        running(create_app(Settings(database_url=outage.url))) as client,
    ):
        await outage.begin()
        response = await asyncio.wait_for(
            client.get("/api/v1/jobs/pickup", headers={"nexrender-secret": "rt_" + "x" * 43}),
            timeout=10,
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "error": "The server cannot reach its database right now; try again in a few seconds.",
        "code": "SERVICE_UNAVAILABLE",
    }
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_field_that_loses_the_database_is_a_coded_error_and_a_warning(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The token is remembered (the bus still listens), so the request runs; the field that
    needs the database gets SERVICE_UNAVAILABLE, the rest of the answer stands."""
    async with outage_ready(backend) as outage:
        app = create_app(Settings(database_url=outage.url))
        async with running(app) as client:
            issued = await users.create_user("outage@example.com")
            headers = {"Authorization": f"Bearer {issued.token}"}
            query = {"query": '{ me { email } job(id: "nosuchjob") { id } }'}
            assert (await client.post("/graphql", json=query, headers=headers)).status_code == 200
            await outage.begin(sparing=app.state.bus.listen_backend_pid)
            response = await asyncio.wait_for(
                client.post("/graphql", json=query, headers=headers), timeout=10
            )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"me": {"email": "outage@example.com"}, "job": None}
    [error] = body["errors"]
    assert error["path"] == ["job"]
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE"}
    assert error["message"] == (
        "The server cannot reach its database right now; try again in a few seconds."
    )
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    logged = [record.getMessage() for record in caplog.records]
    assert any("field ['job']: the database cannot be reached" in line for line in logged)


async def test_a_token_check_that_fails_for_another_reason_is_logged_as_an_error(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only an unreachable database is a warning: a token check that fails otherwise (here the
    users table is gone) is an error in the log, with its traceback. The client gets the same
    coded 503 and no traceback."""
    connection = connections.get("default")
    await connection.execute_script('ALTER TABLE "users" RENAME TO "users_away"')
    try:
        app = create_app(Settings(database_url=db), manage_database=False)
        async with client_of(app) as client:
            response = await client.post(
                "/graphql",
                json={"query": "{ me { email } }"},
                headers={"Authorization": "Bearer rt_" + "x" * 43},
            )
    finally:
        await connection.execute_script('ALTER TABLE "users_away" RENAME TO "users"')
    assert response.status_code == 503 and "Traceback" not in response.text
    [logged] = [record for record in caplog.records if "Checking a token" in record.getMessage()]
    assert logged.levelno == logging.ERROR and logged.exc_info is not None
