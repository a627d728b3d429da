"""The probes: /healthz (liveness: the process serves, whatever the database does), /readyz
(readiness: the database answers and, on PostgreSQL, the event bus LISTENs; 503 naming what is
down) and Nexrender's /api/v1/health (the database answers), through the app with its lifespan
running, as the outages happen.

A SQLite file, once open, answers as long as the process lives, so the outages are PostgreSQL's:
the server going away, and the LISTEN connection alone going away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from app.factory import create_app
from app.migrations import apply_migrations
from app.settings import Settings
from service.bus import PostgresBus
from service.bus.postgres import listen_dsn
from tests.databases import fresh_postgres_database, postgres_server_url
from tests.observed_server import parse

UNREACHABLE_POSTGRES = "postgres://postgres@127.0.0.1:1/nowhere"
WAIT = 10.0
POSTGRES_OUTAGES = "SQLite has no server to lose: the outages are tested on the PostgreSQL run"


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered (it opens the database and starts the bus itself)."""
    lifespan = app.router.lifespan_context(app)
    async with asyncio.timeout(WAIT * 2):
        await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as c:
            yield c
    finally:
        async with asyncio.timeout(WAIT * 2):
            await lifespan.__aexit__(None, None, None)


@asynccontextmanager
async def own_postgres_database() -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A migrated database of the test's own, and a connection to the server's `postgres`
    database that can refuse connections to it."""
    server_url = postgres_server_url()
    assert server_url is not None
    async with fresh_postgres_database(server_url) as url:
        await apply_migrations(url)
        admin = await asyncpg.connect(listen_dsn(url.rsplit("/", 1)[0] + "/postgres"))
        try:
            yield url, admin
        finally:
            await admin.execute(f'ALTER DATABASE "{name_of(url)}" ALLOW_CONNECTIONS true')
            await admin.close()


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def probe(client: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await asyncio.wait_for(client.get(path), timeout=WAIT)
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    return response


async def test_every_probe_answers_ok_while_everything_works(database_url: str) -> None:
    async with running(create_app(Settings(database_url=database_url))) as client:
        for path in ("/healthz", "/readyz", "/api/v1/health"):
            response = await probe(client, path)
            assert (response.status_code, response.json()) == (200, {"status": "ok"}), path


async def test_readyz_is_503_once_the_server_is_stopping(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url))
    async with running(app) as client:
        app.state.stopping = True  # what a SIGTERM sets first (app/factory.py: drain)
        ready = await probe(client, "/readyz")
        assert (await probe(client, "/healthz")).status_code == 200
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "server": "stopping"}


async def test_healthz_lives_on_while_the_database_cannot_be_reached(backend: str) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_OUTAGES)
    async with running(create_app(Settings(database_url=UNREACHABLE_POSTGRES))) as client:
        for _ in range(2):  # a failed check leaves nothing behind that blocks the next one
            assert (await probe(client, "/healthz")).json() == {"status": "ok"}
            ready = await probe(client, "/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["status"] == "unavailable"
            assert body["database"] == "unreachable"
            assert "LISTEN" in body["event_bus"]
            nexrender = await probe(client, "/api/v1/health")
            assert nexrender.status_code == 503
            assert nexrender.json() == {"status": "unavailable", "database": "unreachable"}


async def test_readyz_follows_the_database_going_away_and_coming_back(backend: str) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_OUTAGES)
    async with own_postgres_database() as (url, admin):
        app = create_app(Settings(database_url=url))
        async with running(app) as client:
            assert (await probe(client, "/readyz")).status_code == 200
            retries = parse((await client.get("/metrics")).text)(
                "rendertrack_bus_read_retries_total"
            )

            await admin.execute(f'ALTER DATABASE "{name_of(url)}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name_of(url),
            )
            ready = await probe(client, "/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "unreachable"
            assert (await probe(client, "/healthz")).status_code == 200
            assert (await probe(client, "/api/v1/health")).status_code == 503
            # The event dispatcher's reads fail meanwhile, and are retried.
            async with asyncio.timeout(WAIT):
                while True:
                    scraped = parse((await client.get("/metrics")).text)
                    if scraped("rendertrack_bus_read_retries_total") > retries:
                        break
                    await asyncio.sleep(0.1)
            assert scraped("rendertrack_database_up") == 0

            await admin.execute(f'ALTER DATABASE "{name_of(url)}" ALLOW_CONNECTIONS true')
            async with asyncio.timeout(WAIT):  # the pool reconnects at once, LISTEN with backoff
                while (ready := await probe(client, "/readyz")).status_code != 200:
                    await asyncio.sleep(0.1)
            assert ready.json() == {"status": "ok"}


async def test_readyz_is_503_while_the_listen_connection_is_down(backend: str) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_OUTAGES)
    async with own_postgres_database() as (url, admin):
        app = create_app(Settings(database_url=url))
        async with running(app) as client:
            bus = app.state.bus
            assert isinstance(bus, PostgresBus) and bus.listen_backend_pid is not None
            reconnects = parse((await client.get("/metrics")).text)(
                "rendertrack_bus_reconnects_total"
            )

            # The pool's connections stay; the LISTEN connection goes and cannot come back.
            await admin.execute(f'ALTER DATABASE "{name_of(url)}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend($1)", bus.listen_backend_pid)
            async with asyncio.timeout(WAIT):
                while (ready := await probe(client, "/readyz")).status_code != 503:
                    await asyncio.sleep(0.05)
            body = ready.json()
            assert body["status"] == "unavailable"
            assert "LISTEN" in body["event_bus"]
            assert "database" not in body, body
            assert (await probe(client, "/api/v1/health")).status_code == 200

            await admin.execute(f'ALTER DATABASE "{name_of(url)}" ALLOW_CONNECTIONS true')
            async with asyncio.timeout(WAIT):
                while (await probe(client, "/readyz")).status_code != 200:
                    await asyncio.sleep(0.1)
            found = parse((await client.get("/metrics")).text)
            assert found("rendertrack_bus_reconnects_total") == reconnects + 1
