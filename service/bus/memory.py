"""The bus for one server process (SQLite, tests): committed events go straight to the
dispatcher of this process."""

from __future__ import annotations

from collections.abc import Sequence

from tortoise import BaseDBAsyncClient

from domain.events import JobEvent
from service.bus.core import BusCore, Revocation


class InProcessBus(BusCore):
    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        return None

    async def committed(self, events: Sequence[JobEvent]) -> None:
        """Queues the events for the dispatcher and returns at once."""
        for event in events:
            self._enqueue(event)

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        return None

    async def revocation_committed(self, user_id: str) -> None:
        self._enqueue(Revocation(user_id))
