"""The time the use cases and duties go by: UTC now, which tests of the timed duties (stalls,
backoff, deadlines) can move forward without waiting."""

from __future__ import annotations

from datetime import datetime, timedelta

from models.base import utc_now

_offset = timedelta(0)


def now() -> datetime:
    return utc_now() + _offset


def advance(seconds: float) -> None:
    """Moves this process's clock forward (tests only)."""
    global _offset
    _offset += timedelta(seconds=seconds)


def reset() -> None:
    global _offset
    _offset = timedelta(0)
