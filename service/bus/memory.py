"""The bus for one server process (SQLite, tests).

Staging an event pokes the dispatcher from inside the transaction. Its read of the table waits
for the transaction to end (Tortoise's SQLite client runs one transaction at a time on its one
connection), so it sees the events once they committed, and nothing of a rollback. A request
cancelled right after its commit therefore loses nothing: the poke came before the commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from tortoise import BaseDBAsyncClient

from domain.events import JobEvent
from service.bus.core import BusCore


class InProcessBus(BusCore):
    async def stage(self, connection: BaseDBAsyncClient, events: Sequence[JobEvent]) -> None:
        self._poke()

    async def committed(self, events: Sequence[JobEvent]) -> None:
        self._poke()

    async def stage_revocation(self, connection: BaseDBAsyncClient, user_id: str) -> None:
        return None

    async def revocation_committed(self, user_id: str) -> None:
        self._tell_revocation(user_id)
