"""Handing committed changes to the event bus.

A use case stages its events inside its transaction (the PostgreSQL bus sends NOTIFY there, so
the notification is delivered exactly when the change commits) and reports them as committed
after the transaction (the in-process bus delivers them then). The live buses are in
service/bus/; the publisher in use is set once per process by the app's lifespan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tortoise import BaseDBAsyncClient

from domain.events import JobEvent


class EventPublisher(Protocol):
    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        """Called inside the change's transaction."""

    async def committed(self, events: Sequence[JobEvent]) -> None:
        """Called after the transaction committed."""

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        """Inside the transaction that rotates a user's token or deactivates them."""

    async def revocation_committed(self, user_id: str) -> None:
        """After that transaction committed: every process closes the user's connections."""


class RecordingPublisher:
    """Keeps every committed event in order: for tests and for processes without subscribers."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.revoked: list[str] = []

    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        return None

    async def committed(self, events: Sequence[JobEvent]) -> None:
        self.events.extend(events)

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        return None

    async def revocation_committed(self, user_id: str) -> None:
        self.revoked.append(user_id)

    def clear(self) -> None:
        self.events.clear()
        self.revoked.clear()


class _NullPublisher:
    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        return None

    async def committed(self, events: Sequence[JobEvent]) -> None:
        return None

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        return None

    async def revocation_committed(self, user_id: str) -> None:
        return None


_publisher: EventPublisher = _NullPublisher()


def set_publisher(publisher: EventPublisher | None) -> EventPublisher:
    """Installs `publisher` (None: publish nowhere) and returns the one it replaces."""
    global _publisher
    previous = _publisher
    _publisher = publisher or _NullPublisher()
    return previous


def publisher() -> EventPublisher:
    return _publisher
