"""A job's log: timestamped lines, capped in size by dropping the oldest.

The log is kept line by line, so that an append costs the size of its lines, not the size of
the log. Past the cap the oldest lines go, a batch at a time (down to three quarters of the cap,
so trimming is rare), and the log as read starts with one line saying how much was dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

DEFAULT_LOG_LIMIT_BYTES = 256 * 1024
TRIM_TO_FRACTION = 0.75


def split_lines(text: str) -> list[str]:
    """One entry a client sent, as log lines: each line break starts a line of its own (stamped
    like any other), blank lines and trailing whitespace dropped."""
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def stamp(line: str, at: datetime) -> str:
    """The line as stored and read: prefixed with its UTC time."""
    return f"[{at.isoformat(timespec='seconds')}] {line}"


def size_of(stamped_line: str) -> int:
    """What a line counts against the cap: its UTF-8 bytes and the line break."""
    return len(stamped_line.encode("utf-8")) + 1


def bytes_to_drop(kept_bytes: int, limit_bytes: int) -> int:
    """How many of the oldest bytes to drop once `kept_bytes` are kept: none while within the
    limit, else enough to get down to TRIM_TO_FRACTION of it."""
    if kept_bytes <= limit_bytes:
        return 0
    return kept_bytes - int(limit_bytes * TRIM_TO_FRACTION)


def lines_covering(sizes_oldest_first: Sequence[int], wanted_bytes: int) -> int:
    """How many of the oldest lines to drop to free at least `wanted_bytes`."""
    freed = 0
    for count, size in enumerate(sizes_oldest_first, start=1):
        freed += size
        if freed >= wanted_bytes:
            return count
    return len(sizes_oldest_first)


@dataclass(frozen=True)
class Dropped:
    lines: int = 0
    bytes: int = 0

    def marker(self) -> str | None:
        if not self.lines:
            return None
        return (
            f"[… {self.lines:,} earlier lines ({self.bytes:,} bytes) dropped: "
            "the log keeps its most recent part]"
        )


def render(
    lines: Sequence[str], dropped: Dropped, *, tail: int | None = None, has_lines: bool = False
) -> str | None:
    """The log as one text; with `tail`, its last `tail` lines (the marker counts as a line
    only when the whole log fits in the tail). None for a job that has logged nothing;
    `has_lines` says it has, when `lines` were not read (a tail of 0)."""
    marker = dropped.marker()
    if not lines and marker is None and not has_lines:
        return None
    shown = list(lines)
    if marker is not None:
        shown.insert(0, marker)
    if tail is not None:
        shown = shown[-tail:] if tail > 0 else []
    return "\n".join(shown)
