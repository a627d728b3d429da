"""The event bus: committed job changes to every subscriber, in this process and others.

`create_bus` picks the implementation from the database URL: LISTEN/NOTIFY on PostgreSQL,
in-process otherwise. Install it with `service.events.set_publisher(bus)` after `start()`.
"""

from __future__ import annotations

from models.config import is_postgres
from service.bus.core import EventBus, JobLoader
from service.bus.memory import InProcessBus
from service.bus.postgres import PostgresBus
from service.bus.subscription import Delivery, Resync, SubscriberOverflow, Subscription

__all__ = [
    "Delivery",
    "EventBus",
    "InProcessBus",
    "JobLoader",
    "PostgresBus",
    "Resync",
    "SubscriberOverflow",
    "Subscription",
    "create_bus",
]


def create_bus(database_url: str, load_job: JobLoader) -> EventBus:
    if is_postgres(database_url):
        return PostgresBus(database_url, load_job)
    return InProcessBus(load_job)
