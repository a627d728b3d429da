"""The event bus: committed job changes to every subscriber, in this process and others.

`create_bus` picks the implementation from the database URL: LISTEN/NOTIFY on PostgreSQL,
in-process otherwise. Either way the events themselves are read from the job_events table (the
bus only says when to look). Install it with `service.events.set_publisher(bus)` after `start()`.
"""

from __future__ import annotations

from models.config import is_postgres
from service.bus.core import EventBus, EventSource
from service.bus.memory import InProcessBus
from service.bus.postgres import PostgresBus
from service.bus.source import TableSource
from service.bus.subscription import GAP, Delivery, Gap, Subscription

__all__ = [
    "GAP",
    "Delivery",
    "EventBus",
    "EventSource",
    "Gap",
    "InProcessBus",
    "PostgresBus",
    "Subscription",
    "TableSource",
    "create_bus",
]


def create_bus(database_url: str, source: EventSource | None = None) -> EventBus:
    source = source or TableSource()
    if is_postgres(database_url):
        return PostgresBus(database_url, source)
    return InProcessBus(source)
