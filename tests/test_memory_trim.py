"""After a wave of websockets went, the process hands freed memory back once, when the wave is
over (gql/connections.py), and a stopped app leaves no hand-back pending."""

from __future__ import annotations

import asyncio

import pytest

from gql import connections
from gql.connections import ConnectionRegistry

DELAY = 0.05


class Sock:  # hashable stand-in for a websocket
    pass


class Someone:
    def __init__(self, n: int) -> None:
        self.id, self.token_hash = f"u{n}", "t"


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    done: list[int] = []
    monkeypatch.setattr(connections, "TRIM_DELAY_SECONDS", DELAY)
    monkeypatch.setattr(connections, "MALLOC_TRIM", lambda: done.append(1))
    return done


def admitted(registry: ConnectionRegistry, count: int) -> list[Sock]:
    sockets = [Sock() for _ in range(count)]
    for n, sock in enumerate(sockets):
        registry.admit(sock, Someone(n))  # type: ignore[arg-type]
    return sockets


async def test_a_wave_longer_than_the_delay_is_handed_back_once_after_its_end(
    trims: list[int],
) -> None:
    registry = ConnectionRegistry(max_per_user=1_000)
    sockets = admitted(registry, connections.TRIM_AFTER_RELEASES + 20)
    for sock in sockets[: connections.TRIM_AFTER_RELEASES]:
        registry.discard(sock)  # type: ignore[arg-type]
    for sock in sockets[connections.TRIM_AFTER_RELEASES :]:  # 0.2 s more, never quiet for long
        await asyncio.sleep(DELAY / 5)
        registry.discard(sock)  # type: ignore[arg-type]
        assert trims == []
    await asyncio.sleep(DELAY * 3)
    assert trims == [1] and registry.trims == 1


async def test_a_stopped_registry_hands_nothing_back_later(trims: list[int]) -> None:
    registry = ConnectionRegistry(max_per_user=1_000)
    for sock in admitted(registry, connections.TRIM_AFTER_RELEASES):
        registry.discard(sock)  # type: ignore[arg-type]
    registry.stop()
    await asyncio.sleep(DELAY * 3)
    assert trims == [] and registry.trims == 0
