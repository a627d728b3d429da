"""One event, many subscribers: a subscription's selection runs once per event for every
subscriber with the same document, variables and caller, and each gets the same answer. In the
schema, on the database of the session."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from domain import estimates
from gql.context import Context
from gql.schema import schema
from models import User
from service import jobs
from service.bus import EventBus
from tests.conftest import Account
from tests.factories import valid_submission

WAIT = 10
FOLLOW = """subscription($id: ID!) { jobUpdated(id: $id) {
    kind sequence job { id priority estimatedCompletionAt user { email } } } }"""
OTHER_SELECTION = """subscription($id: ID!) { jobUpdated(id: $id) {
    sequence job { priority estimatedCompletionAt } } }"""


async def test_the_selection_runs_once_per_event_per_document_and_caller(
    bus: EventBus, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await User.get(id=accounts["user"].id)
    admin = await User.get(id=accounts["admin"].id)
    job = await jobs.submit_job(accounts["user"].actor, valid_submission())
    runs: list[str] = []
    real = estimates.estimated_completion_at

    def counted(**arguments: Any) -> Any:
        runs.append(arguments["status"])
        return real(**arguments)

    monkeypatch.setattr(estimates, "estimated_completion_at", counted)

    async def stream(user: User, document: str) -> Any:
        context = Context(request=None, response=None, user=user, bus=bus)  # type: ignore[arg-type]
        return await schema.subscribe(
            document, variable_values={"id": job.id}, context_value=context
        )

    groups = {
        "owner": [await stream(owner, FOLLOW) for _ in range(20)],
        "admin": [await stream(admin, FOLLOW) for _ in range(5)],
        "owner, other selection": [await stream(owner, OTHER_SELECTION) for _ in range(3)],
    }
    streams = [s for members in groups.values() for s in members]
    async with asyncio.timeout(WAIT):
        snapshots = await asyncio.gather(*(s.__anext__() for s in streams))
    assert all(not result.errors for result in snapshots)
    assert len(runs) == 28  # a snapshot is the subscriber's own
    assert bus.subscriber_count == 28

    runs.clear()
    await jobs.set_priority(job.id, 9, actor=accounts["user"].actor)
    async with asyncio.timeout(WAIT):
        changes = {
            name: await asyncio.gather(*(s.__anext__() for s in members))
            for name, members in groups.items()
        }
    assert len(runs) == 3  # one run per (document, caller), not 28
    for name, results in changes.items():
        assert all(not result.errors for result in results), name
        assert all(result.data == results[0].data for result in results), name
        assert results[0].data["jobUpdated"]["job"]["priority"] == 9
    assert changes["owner"][0].data["jobUpdated"]["job"]["user"] == {"email": owner.email}
    for s in streams:
        await s.aclose()
