"""A subscriber that falls too far behind is told so by an error and closed, in the schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gql.context import Context
from gql.schema import schema
from models import Job, User
from service import jobs, live
from service.bus import InProcessBus
from service.events import set_publisher
from tests.conftest import Account
from tests.factories import valid_submission

JOB_EVENTS = "subscription { jobEvents { kind job { id status } } }"


@pytest_asyncio.fixture
async def bus(db: str) -> AsyncIterator[InProcessBus]:
    async def load(job_id: str) -> Job | None:
        return await Job.get_or_none(id=job_id)

    live = InProcessBus(load)
    await live.start()
    previous = set_publisher(live)
    yield live
    set_publisher(previous)
    await live.stop()


async def test_a_subscriber_too_far_behind_gets_an_error_and_is_closed(
    bus: InProcessBus, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "SUBSCRIBER_BUFFER", 4)
    admin = await User.get(id=accounts["admin"].id)
    context = Context(request=None, response=None, user=admin, bus=bus)  # type: ignore[arg-type]
    stream = await schema.subscribe(JOB_EVENTS, context_value=context)
    first = stream.__anext__()  # runs the resolver up to its subscription, waiting for events

    await jobs.submit_job(accounts["user"].actor, valid_submission())
    result = await first
    assert result.data["jobEvents"]["kind"] == "CREATED"
    assert bus.subscriber_count == 1

    for _ in range(3):  # 9 status events while nobody reads: more than the buffer holds
        await jobs.submit_job(accounts["user"].actor, valid_submission())
    async with asyncio.timeout(5):  # the dispatcher delivers, finds the buffer full, drops it
        while bus.subscriber_count:
            await asyncio.sleep(0.01)

    results = [result async for result in stream]
    errors = [error for result in results for error in (result.errors or [])]
    assert [error.extensions["code"] for error in errors] == ["SUBSCRIBER_OVERFLOW"]
    assert "fell more than 4 events behind" in errors[0].message
