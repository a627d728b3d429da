"""The SQL that tortoise sends, as logged by its "tortoise.db_client" logger (DEBUG): tests and
benchmarks count statements, read their text or parameters, or EXPLAIN them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LOGGER = "tortoise.db_client"


@dataclass(frozen=True)
class SqlStatement:
    """One logged statement. `parameters` is None when the record carried none (text only)."""

    text: str
    parameters: list[Any] | None

    @property
    def one_line(self) -> str:
        """The text with its whitespace collapsed."""
        return " ".join(self.text.split())


def statement_of(record: logging.LogRecord) -> SqlStatement:
    """Tortoise logs `debug("%s: %s", sql, parameters)`, and some statements as the msg only."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], str):
        return SqlStatement(args[0], list(args[1] or []))
    return SqlStatement(record.getMessage(), None)


class SqlLog(logging.Handler):
    """Collects each statement into `statements` while `recording`."""

    def __init__(self, *, recording: bool = True) -> None:
        super().__init__(logging.DEBUG)
        self.recording = recording
        self.statements: list[SqlStatement] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.recording:
            self.statements.append(statement_of(record))

    @contextmanager
    def window(self) -> Iterator[list[SqlStatement]]:
        """Records into a fresh list for the duration of the block only."""
        self.statements = []
        self.recording = True
        try:
            yield self.statements
        finally:
            self.recording = False


@contextmanager
def sql_log(*, recording: bool = True, propagate: bool = True) -> Iterator[SqlLog]:
    """A SqlLog attached to the logger (set to DEBUG) for the block; level and propagation are
    restored after. propagate=False keeps the DEBUG lines out of the test report."""
    logger = logging.getLogger(LOGGER)
    handler = SqlLog(recording=recording)
    level, propagated = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = propagate
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagated


@contextmanager
def capture_sql(*, propagate: bool = True) -> Iterator[list[SqlStatement]]:
    """The statements logged during the block, in order (a sync context manager: fine in async
    code too)."""
    with sql_log(propagate=propagate) as log:
        yield log.statements
