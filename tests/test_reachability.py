"""Which failures count as "the database cannot be reached" for the background duties."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions as pg
import pytest
from tortoise.exceptions import OperationalError

from models.reachability import database_unreachable


def raised_from(cause: BaseException) -> BaseException:
    """`cause` wrapped the way Tortoise wraps a driver's error."""
    try:
        try:
            raise cause
        except Exception as error:
            raise OperationalError(error) from error
    except OperationalError as wrapped:
        return wrapped


async def test_a_refused_connection_is_unreachable() -> None:
    with pytest.raises(OSError) as refused:
        await asyncpg.connect("postgresql://nobody@127.0.0.1:1/none", timeout=5)
    assert database_unreachable(refused.value)
    assert database_unreachable(raised_from(refused.value))


@pytest.mark.parametrize(
    "cause",
    [
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.CannotConnectNowError("the database system is starting up"),
        pg.TooManyConnectionsError("sorry, too many clients already"),
        pg.ObjectNotInPrerequisiteStateError('database "x" is not currently accepting connections'),
        pg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        TimeoutError(),
    ],
)
def test_the_database_going_away_is_unreachable(cause: BaseException) -> None:
    assert database_unreachable(raised_from(cause))


@pytest.mark.parametrize(
    "cause",
    [
        pg.UndefinedTableError('relation "jobs" does not exist'),
        pg.ObjectNotInPrerequisiteStateError("lock is not held"),
        ValueError("a bug"),
    ],
)
def test_a_failing_statement_is_not_an_outage(cause: BaseException) -> None:
    assert not database_unreachable(raised_from(cause))
