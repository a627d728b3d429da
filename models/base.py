"""What every model shares: cuid primary keys and an `updated_at` that moves on every write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cuid2 import Cuid
from tortoise import fields
from tortoise.manager import Manager
from tortoise.queryset import QuerySet, UpdateQuery

from domain.lookups import ID_LENGTH

CUID_LENGTH = ID_LENGTH
_cuid = Cuid(length=CUID_LENGTH)


def new_id() -> str:
    return _cuid.generate()


def utc_now() -> datetime:
    return datetime.now(UTC)


class TouchingQuerySet(QuerySet):
    """A QuerySet whose bulk `update()` also sets `updated_at`, which Tortoise skips there."""

    def update(self, **kwargs: Any) -> UpdateQuery:
        kwargs.setdefault("updated_at", utc_now())
        return super().update(**kwargs)


class TouchingManager(Manager):
    def get_queryset(self) -> QuerySet:
        return TouchingQuerySet(self._model)


class VerbatimJSONField(fields.JSONField):
    """JSON stored as the client sent it. PostgreSQL's JSONB would normalise numbers (a float
    such as 1.7976931348623157e308 comes back as an integer literal); plain JSON keeps the text."""

    class _db_postgres:
        SQL_TYPE = "JSON"
