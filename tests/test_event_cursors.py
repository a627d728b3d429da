"""Event cursors (domain.events.Cursor): what jobEvents(after:) and Job.events(after:) accept.
Pure: no database."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from domain.errors import BadUserInput
from domain.events import Cursor, JobEvent, JobEventKind, reason_of
from domain.status import JobStatus

AT = datetime(2026, 11, 29, 12, 30, 15, 123000, tzinfo=UTC)


def test_a_cursor_round_trips_its_position_sequence_and_time() -> None:
    cursor = Cursor(position=123_456_789_012, sequence=42, at=AT)
    assert Cursor.decode(cursor.encode()) == cursor
    assert "=" not in cursor.encode()  # fits a URL as it is


def test_an_event_gives_its_cursor_once_it_was_recorded() -> None:
    event = JobEvent(JobEventKind.PROGRESS, "j", "u", JobStatus.RENDERING, None, 5, 7, AT)
    with pytest.raises(ValueError, match="never recorded"):
        _ = event.cursor
    recorded = JobEvent(
        JobEventKind.PROGRESS, "j", "u", JobStatus.RENDERING, None, 5, 7, AT, position=99
    )
    assert Cursor.decode(recorded.cursor) == Cursor(99, 7, AT)


def forged(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a cursor",
        "x" * 500,
        forged("e1:1:2"),
        forged("e2:1:2:3"),
        forged("e1:-1:2:3"),
        forged("e1:1:-2:3"),
        forged(f"e1:{2**63}:1:3"),
        forged(f"e1:1:{2**31}:3"),
        forged("e1:1:1:99999999999999999999"),
        forged("e1:a:b:c"),
        "\u00e9\u00e9\u00e9\u00e9",
    ],
)
def test_anything_else_is_refused_naming_the_argument(text: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        Cursor.decode(text, "after")
    assert [(error.field, error.message) for error in refused.value.errors] == [
        ("after", "is not a cursor this API gave out")
    ]


def test_not_a_string_is_refused_too() -> None:
    with pytest.raises(BadUserInput):
        Cursor.decode(12, "after")


def test_the_reason_of_a_change_is_its_error_or_cancellation_else_its_log() -> None:
    assert reason_of({"error_message": "boom"}, ("line",)) == "boom"
    assert reason_of({"cancelled_reason": "brief changed"}) == "brief changed"
    assert reason_of({"error_message": None}, ("requeued: worker silent",)) == (
        "requeued: worker silent"
    )
    assert reason_of({"progress": 5}) is None
