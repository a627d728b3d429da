"""What the operations tests share: a database of their own for `rendertrack serve`, and the
scrape of /metrics as numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.databases import fresh_postgres_database, postgres_server_url, selected_backend


@asynccontextmanager
async def server_database(scratch: Path) -> AsyncIterator[str]:
    """An empty database for one `rendertrack serve`, of the backend under test."""
    if selected_backend() == "sqlite":
        yield f"sqlite:///{scratch / 'db' / 'rendertrack.sqlite3'}"
        return
    server_url = postgres_server_url()
    assert server_url is not None
    async with fresh_postgres_database(server_url) as url:
        yield url


@dataclass(frozen=True)
class Scrape:
    """One answer of GET /metrics: each sample's value by name and labels."""

    text: str
    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a sample the scrape does not have."""
        return self.values.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.values


def parse(text: str) -> Scrape:
    values = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return Scrape(text, values)


async def scrape(http: httpx.AsyncClient, **headers: str) -> Scrape:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)
