"""Figures from samples: percentiles, rates, ratios, and goals judged met or missed.

A goal is a dict (it goes into bench/results/latest.json as it is): what it is about, the value
measured with its unit, the comparison and the target, and `met` (None when it was not judged,
e.g. a quick run's sizes are not the goal's)."""

from __future__ import annotations

import statistics
from typing import Any


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90 and p99 (inclusive method: no extrapolation past the largest value)."""
    if not values:
        raise ValueError("no samples")
    if len(values) == 1:
        return {"p50": values[0], "p90": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99/max and the count of latencies given in seconds, in milliseconds."""
    cut = percentiles([1000 * value for value in seconds])
    return {**cut, "max": 1000 * max(seconds), "samples": len(seconds)}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def median_ratio(numerators: list[float], denominators: list[float]) -> dict[str, float]:
    """The median of pairwise ratios (rounds run side by side) with their range."""
    ratios = sorted(a / b for a, b in zip(numerators, denominators, strict=True) if b)
    if not ratios:
        return {}
    return {"median": statistics.median(ratios), "low": ratios[0], "high": ratios[-1]}


def goal(
    about: str,
    value: float | None,
    unit: str,
    comparison: str,
    target: float,
    *,
    judged: bool = True,
    note: str = "",
) -> dict[str, Any]:
    """`value comparison target` (comparison "<=" or ">="), met or not; not judged when
    `judged` is false or there is no value (`note` says why)."""
    if comparison not in {"<=", ">="}:
        raise ValueError(comparison)
    met: bool | None = None
    if judged and value is not None:
        met = value <= target if comparison == "<=" else value >= target
    return {
        "about": about,
        "value": value,
        "unit": unit,
        "comparison": comparison,
        "target": target,
        "met": met,
        "note": note,
    }


def verdict(entry: dict[str, Any]) -> str:
    if entry["met"] is None:
        return "not judged" + (f" ({entry['note']})" if entry["note"] else "")
    text = "met" if entry["met"] else "MISSED"
    return text + (f" ({entry['note']})" if entry["note"] else "")


def goal_line(entry: dict[str, Any]) -> str:
    value, unit = entry["value"], entry["unit"]
    gap = "" if unit == "x" else " "
    shown = "-" if value is None else f"{value:,.2f}{gap}{unit}".rstrip()
    target = f"{entry['target']:,g}{gap}{unit}".rstrip()
    return f"{entry['about']}: {shown} (goal {entry['comparison']} {target}): {verdict(entry)}"
