from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from app.database import open_database
from domain.policy import Actor
from models import User
from service import users
from service.events import RecordingPublisher, set_publisher
from service.users import actor_of
from tests.databases import (
    SKIP_POSTGRES_REASON,
    describe_backend_choice,
    empty_tables,
    migrated_database,
    postgres_server_url,
    running_in_ci,
    selected_backend,
)


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


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[str]:
    """The session's database, opened for this test and emptied first."""
    async with open_database(database_url):
        await empty_tables()
        yield database_url


@pytest_asyncio.fixture
async def user(db: str) -> User:
    return (await users.create_user("ada@example.com", "Ada", "user")).user


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
