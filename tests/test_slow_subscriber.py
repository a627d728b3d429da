"""A subscriber that falls far behind misses nothing: its buffer is dropped for a gap, and the
gap is replayed from the job history, in order, through the schema."""

from __future__ import annotations

import asyncio

import pytest

from gql.context import Context
from gql.schema import schema
from models import User
from service import jobs, live
from service.bus import EventBus
from tests.conftest import Account
from tests.factories import valid_submission

JOB_EVENTS = "subscription { jobEvents { kind sequence cursor job { id status } } }"


async def test_a_subscriber_too_far_behind_is_caught_up_from_the_history(
    bus: EventBus, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "SUBSCRIBER_BUFFER", 4)
    admin = await User.get(id=accounts["admin"].id)
    context = Context(request=None, response=None, user=admin, bus=bus)  # type: ignore[arg-type]
    stream = await schema.subscribe(JOB_EVENTS, context_value=context)
    # Runs the resolver up to its subscription, which then waits for events.
    first = asyncio.ensure_future(stream.__anext__())
    async with asyncio.timeout(5):
        while not bus.subscriber_count:
            await asyncio.sleep(0.01)

    submitted = [await jobs.submit_job(accounts["user"].actor, valid_submission())]
    async with asyncio.timeout(5):
        result = await first
    assert result.data["jobEvents"]["kind"] == "CREATED"

    for _ in range(5):  # 15 status events while nobody reads: more than the buffer holds
        submitted.append(await jobs.submit_job(accounts["user"].actor, valid_submission()))
    (subscription,) = list(bus._all)
    async with asyncio.timeout(5):  # the dispatcher finds the buffer full and leaves a gap
        while not subscription.gaps:
            await asyncio.sleep(0.01)

    received: list[tuple[str, int]] = []
    async with asyncio.timeout(5):
        while len(received) < 3 * len(submitted) - 1:
            result = await stream.__anext__()
            assert not result.errors, result.errors
            event = result.data["jobEvents"]
            received.append((event["job"]["id"], event["sequence"]))
    expected = [(job.id, sequence) for job in submitted for sequence in (1, 2, 3)]
    assert received == expected[1:]
