from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from app.database import open_database
from app.factory import create_app
from app.settings import Settings
from domain.policy import Actor
from models import User
from service import clock, users
from service.bus import EventBus
from service.events import RecordingPublisher, set_publisher
from service.users import actor_of
from tests.buses import FlakySource, started_bus
from tests.databases import (
    SKIP_POSTGRES_REASON,
    describe_backend_choice,
    empty_tables,
    migrated_database,
    postgres_server_url,
    running_in_ci,
    selected_backend,
)
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer, serve


def pytest_report_header() -> str:
    return f"database: {selected_backend()} ({describe_backend_choice()})"


@pytest_asyncio.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A fresh database, migrated from empty, shared by the session."""
    backend = selected_backend()
    if backend == "postgres" and postgres_server_url() is None:
        if running_in_ci():
            pytest.fail(f"CI=true needs PostgreSQL: {SKIP_POSTGRES_REASON}")
        pytest.skip(SKIP_POSTGRES_REASON)
    async with migrated_database(backend, tmp_path_factory.mktemp(backend)) as url:
        yield url


@pytest.fixture
def backend(database_url: str) -> str:
    return "postgres" if database_url.startswith("postgres") else "sqlite"


@pytest.fixture(autouse=True)
def real_time() -> Iterator[None]:
    """Every test starts and ends on the real clock, whatever time it moved on
    (service.clock.advance)."""
    clock.reset()
    yield
    clock.reset()


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[str]:
    """The session's database, opened for this test and emptied first."""
    async with open_database(database_url):
        await empty_tables()
        yield database_url


@pytest_asyncio.fixture
async def user(db: str) -> User:
    return (await users.create_user("ada@example.com", "Ada", "user")).user


@pytest_asyncio.fixture
async def bus(db: str) -> AsyncIterator[EventBus]:
    """The test database's live bus, started and publishing the use cases' events (a module
    may override it: tests/test_bus.py gives it a source of its own)."""
    async with started_bus(db, FlakySource()) as started:
        yield started


@pytest.fixture
def recorder() -> Iterator[RecordingPublisher]:
    """Every event the use cases publish during the test, in order."""
    recording = RecordingPublisher()
    previous = set_publisher(recording)
    yield recording
    set_publisher(previous)


@pytest_asyncio.fixture
async def owner(db: str) -> Actor:
    return actor_of((await users.create_user("owner@example.com", "Owner", "user")).user)


@pytest_asyncio.fixture
async def worker(db: str) -> Actor:
    return actor_of((await users.create_user("worker@example.com", "Worker", "worker")).user)


@pytest_asyncio.fixture
async def admin(db: str) -> Actor:
    return actor_of((await users.create_user("root@example.com", "Root", "admin")).user)


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str
    actor: Actor


async def make_account(email: str, role: str) -> Account:
    issued = await users.create_user(email, email.split("@")[0], role)
    return Account(issued.user.id, issued.user.email, issued.token, actor_of(issued.user))


@pytest_asyncio.fixture
async def accounts(db: str) -> dict[str, Account]:
    """One account per role, plus a second user and a second worker."""
    return {
        "admin": await make_account("admin@example.com", "admin"),
        "user": await make_account("user@example.com", "user"),
        "other": await make_account("other@example.com", "user"),
        "worker": await make_account("worker@example.com", "worker"),
        "worker2": await make_account("worker2@example.com", "worker"),
    }


@pytest_asyncio.fixture
async def api(db: str) -> AsyncIterator[GraphQLClient]:
    """The real Starlette app over HTTP, in-process, on the test database."""
    app = create_app(Settings(database_url=db), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as http:
        yield GraphQLClient(http)


@pytest_asyncio.fixture
async def live(db: str) -> AsyncIterator[LiveServer]:
    """A real uvicorn server in this process, on the test database, with its event bus."""
    async with serve(create_app(Settings(database_url=db), manage_database=False)) as server:
        yield server


@pytest_asyncio.fixture
async def http(live: LiveServer) -> AsyncIterator[GraphQLClient]:
    """GraphQL over real HTTP to the live server."""
    async with httpx.AsyncClient(base_url=live.http_url, timeout=10) as client:
        yield GraphQLClient(client)
