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


class RecordingPublisher:
    """Keeps every committed event in order: for tests and for processes without subscribers."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        return None

    async def committed(self, events: Sequence[JobEvent]) -> None:
        self.events.extend(events)

    def clear(self) -> None:
        self.events.clear()


class _NullPublisher:
    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        return None

    async def committed(self, events: Sequence[JobEvent]) -> None:
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
