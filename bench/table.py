"""Tables as the scenarios print them: Markdown, so that a run pastes into bench/RESULTS.md.
Every figure carries its unit: the formatters below put it there."""

from __future__ import annotations

from typing import Any


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def record(headers: list[str], rows: list[list[str]]) -> dict[str, Any]:
    """The table as latest.json keeps it."""
    return {"headers": headers, "rows": rows}


def ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f} ms"


def per_second(value: float | None, what: str) -> str:
    return "-" if value is None else f"{value:,.0f} {what}/s"


def times(value: float | None) -> str:
    """A ratio, as `0.45x`."""
    return "-" if value is None else f"{value:.2f}x"


def kib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} KiB"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} MiB"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f} s"


def count(value: int | None, what: str = "") -> str:
    return "-" if value is None else f"{value:,} {what}".rstrip()
