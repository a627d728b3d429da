"""Telling a database that cannot be reached from a failure of the statement itself.

A background duty (the sweeper, the bus's reader) that fails because the database went away
logs one warning and tries again: an outage is an operational condition, reported by the health
check, not a defect to be logged with a traceback every few seconds. Anything else stays an
error with its traceback.
"""

from __future__ import annotations

import logging

import asyncpg.exceptions as pg

# The server is shutting down, restarting or refusing new connections, or the connection broke.
_UNREACHABLE_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no route; tortoise's DBConnectionError is one too
    TimeoutError,
    pg.PostgresConnectionError,  # includes "connection was closed in the middle of operation"
    pg.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    pg.TooManyConnectionsError,
    # asyncpg's protocol, when its session is terminated in the middle of an operation, can
    # raise this instead of ConnectionDoesNotExistError (MagicStack/asyncpg#1069).
    pg.InternalClientError,
)
_NOT_ACCEPTING = "not currently accepting connections"  # ALLOW_CONNECTIONS false

# What a client is told while the database cannot be reached, and when to try again.
UNREACHABLE_MESSAGE = "The server cannot reach its database right now; try again in a few seconds."
RETRY_AFTER_SECONDS = 5


def database_unreachable(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the database could not be reached.
    Tortoise wraps asyncpg's errors in its own, so the chain of causes is followed."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE_TYPES):
            return True
        if isinstance(current, pg.ObjectNotInPrerequisiteStateError) and _NOT_ACCEPTING in str(
            current
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def warn_unreachable(
    logger: logging.Logger, doing: str, error: BaseException, suffix: str = ""
) -> None:
    """The one line an outage is logged as, wherever it interrupts something (`doing`)."""
    logger.warning(
        "%s: the database cannot be reached (%s: %s)%s", doing, type(error).__name__, error, suffix
    )


def log_retry(logger: logging.Logger, failed: str, error: BaseException, delay: float) -> None:
    """Logs a background duty's failed round that is tried again in `delay` seconds: a warning
    of one line while the database cannot be reached, an error with its traceback otherwise."""
    if database_unreachable(error):
        warn_unreachable(logger, failed, error, f"; trying again in {delay:g} s")
    else:
        logger.error("%s; trying again in %g s", failed, delay, exc_info=error)
