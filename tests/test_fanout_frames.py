"""One event, many subscribers, one encoding: subscribers with the same document, variables and
caller receive the same result, whose JSON is encoded once and sent as the same text (only the
operation's id differs); a subscriber with other variables or another caller shares nothing.
And a server hands memory back after many websockets went away."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gql import connections, fanout
from gql.connections import ConnectionRegistry
from gql.context import Context
from gql.fanout import SharedData
from gql.schema import schema
from gql.ws_handlers import shared_frame
from models import User
from service import jobs
from service.bus import EventBus
from tests.conftest import Account
from tests.factories import valid_submission

WAIT = 10
FOLLOW = """subscription($id: ID!) { jobUpdated(id: $id) {
    kind sequence job { id priority user { email } } } }"""


def strawberry_text(message: dict[str, Any]) -> str:
    """How Strawberry's websocket adapter encodes a message."""
    return json.dumps(message, separators=(",", ":"))


async def test_one_encoding_for_every_subscriber_with_the_same_document_and_caller(
    bus: EventBus, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await User.get(id=accounts["user"].id)
    admin = await User.get(id=accounts["admin"].id)
    job = await jobs.submit_job(accounts["user"].actor, valid_submission())
    other = await jobs.submit_job(accounts["user"].actor, valid_submission())

    async def stream(user: User, job_id: str) -> Any:
        context = Context(request=None, response=None, user=user, bus=bus)  # type: ignore[arg-type]
        return await schema.subscribe(FOLLOW, variable_values={"id": job_id}, context_value=context)

    same = [await stream(owner, job.id) for _ in range(5)]
    by_admin = await stream(admin, job.id)
    streams = [*same, by_admin]
    async with asyncio.timeout(WAIT):
        snapshots = await asyncio.gather(*(s.__anext__() for s in streams))
    # A snapshot is each subscriber's own: not shared, encoded as Strawberry does.
    assert not any(type(result.data) is SharedData for result in snapshots)
    first = {"id": "1", "type": "next", "payload": {"data": snapshots[0].data}}
    assert shared_frame(first, "next") is None

    encodings: list[object] = []
    real_dumps = fanout.json.dumps

    def counted(value: Any, **options: Any) -> str:
        if isinstance(value, dict) and type(value.get("data")) is SharedData:
            encodings.append(value["data"])
        return real_dumps(value, **options)

    monkeypatch.setattr(fanout.json, "dumps", counted)
    await jobs.set_priority(job.id, 9, actor=accounts["user"].actor)
    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(*(s.__anext__() for s in streams))
    owners, admins = results[:-1], results[-1]
    assert all(not result.errors for result in results)
    assert all(type(result.data) is SharedData for result in results)
    assert all(result.data is owners[0].data for result in owners)
    assert admins.data is not owners[0].data  # another caller: its own execution
    assert owners[0].data["jobUpdated"]["job"]["priority"] == 9

    frames = []
    for n, result in enumerate(owners):
        message = {"id": f"op{n}", "type": "next", "payload": {"data": result.data}}
        frame = shared_frame(message, "next")
        assert frame == strawberry_text(message)
        frames.append(frame.replace(f'"op{n}"', '"1"'))
    assert len(set(frames)) == 1  # byte-identical but for the operation's id
    assert len(encodings) == 1  # encoded once for the five
    legacy = {"type": "data", "id": "1", "payload": {"data": admins.data}}
    assert shared_frame(legacy, "data") == strawberry_text(legacy)
    assert len(encodings) == 2

    # Other variables: another job, another execution, nothing shared with the first.
    elsewhere = await stream(owner, other.id)
    async with asyncio.timeout(WAIT):
        await elsewhere.__anext__()
    await jobs.set_priority(other.id, 8, actor=accounts["user"].actor)
    async with asyncio.timeout(WAIT):
        moved = await elsewhere.__anext__()
    assert moved.data["jobUpdated"]["job"]["priority"] == 8
    assert moved.data is not owners[0].data
    for s in [*streams, elsewhere]:
        await s.aclose()


def test_a_message_with_errors_or_extensions_is_encoded_as_usual() -> None:
    data = SharedData({"jobUpdated": None})
    assert shared_frame({"id": "1", "type": "next", "payload": {"data": data}}, "next")
    with_errors = {"id": "1", "type": "next", "payload": {"data": data, "errors": [{}]}}
    assert shared_frame(with_errors, "next") is None
    assert shared_frame({"id": "1", "type": "next", "payload": {"data": {"a": 1}}}, "next") is None
    assert shared_frame({"id": "1", "type": "complete"}, "next") is None
    assert shared_frame({"id": "1", "type": "next", "payload": {"data": data}}, "data") is None


async def test_memory_is_handed_back_after_many_websockets_went(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(connections, "TRIM_DELAY_SECONDS", 0.05)
    monkeypatch.setattr(connections, "MALLOC_TRIM", lambda: trims.append(1))
    registry = ConnectionRegistry(max_per_user=1_000)

    class Sock:  # hashable stand-in for a websocket
        pass

    class Someone:
        def __init__(self, n: int) -> None:
            self.id, self.token_hash = f"u{n}", "t"

    sockets = [Sock() for _ in range(connections.TRIM_AFTER_RELEASES + 5)]
    for n, sock in enumerate(sockets):
        registry.admit(sock, Someone(n))  # type: ignore[arg-type]
    for sock in sockets[:10]:
        registry.discard(sock)  # type: ignore[arg-type]
    await asyncio.sleep(0.15)
    assert trims == []  # a few websockets going is ordinary
    for sock in sockets[10:]:
        registry.discard(sock)  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    assert trims == []  # not while they are still going
    await asyncio.sleep(0.15)
    assert trims == [1] and registry.trims == 1
