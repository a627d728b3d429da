"""Input rules for render jobs. Pure: standard library only.

- `check_submission`: the shape of a submission (types, names, priority, NUL bytes, JSON); a
  failure means the request itself is malformed and nothing is written.
- `render_spec_problems`: the render spec checked while a job is VALIDATING (paths, extensions,
  allowed roots and URI schemes, the Nexrender job's structure, its paths and its action
  modules); problems make the job FAILED.
- `check_priority`, `check_progress`, `check_reason`, `check_log_line`: single values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from domain.errors import BadUserInput, FieldError
from domain.nexrender import (
    ACTION_STAGES,
    ASSET_TYPES,
    OFFICIAL_ACTIONS,
    key_in_field,
    nexrender_config_problems,
    parse_allowed_actions,
)
from domain.paths import (
    DATA_EXTENSIONS,
    MAX_PATH_LENGTH,
    OUTPUT_EXTENSIONS,
    TEMPLATE_EXTENSIONS,
    URI_SCHEMES,
    has_control_characters,
    parse_allowed_roots,
    parse_uri_schemes,
    render_path_problems,
)

__all__ = [
    "ACTION_STAGES", "ASSET_TYPES", "DATA_EXTENSIONS", "INLINE_DATA_PATH", "MAX_NAME_LENGTH",
    "MAX_NEXRENDER_CONFIG_BYTES", "MAX_PATH_LENGTH", "MAX_REASON_LENGTH", "OFFICIAL_ACTIONS",
    "OUTPUT_EXTENSIONS", "PRIORITY_RANGE", "PROGRESS_RANGE", "TEMPLATE_EXTENSIONS", "URI_SCHEMES",
    "WORKER_OUTPUT_PATH", "CleanSubmission", "JobSubmission", "check_log_line", "check_priority",
    "check_progress", "check_reason", "check_submission", "parse_allowed_actions",
    "parse_allowed_roots", "parse_uri_schemes", "render_spec_problems",
]  # fmt: skip

MAX_NAME_LENGTH = 255
MAX_REASON_LENGTH = 4096
MAX_NEXRENDER_CONFIG_BYTES = 256 * 1024  # of the compact UTF-8 JSON encoding
PRIORITY_RANGE = range(1, 11)  # 1..10, higher is more urgent
DEFAULT_PRIORITY = 5
MAX_ATTEMPTS_RANGE = range(1, 11)  # how many times a job may be claimed before it fails
DEFAULT_MAX_ATTEMPTS = 3
PROGRESS_RANGE = range(0, 101)
INLINE_DATA_PATH = "inline"
WORKER_OUTPUT_PATH = "worker"
_CONFIG = "nexrender_config"

_T = TypeVar("_T")


@dataclass(frozen=True)
class JobSubmission:
    """What a client sends to create a job, unchecked."""

    project_name: object
    output_name: object
    template_path: object
    data_path: object
    output_path: object
    priority: object = DEFAULT_PRIORITY
    nexrender_config: object = None
    auto_cancel_at: object = None  # a timezone-aware datetime or None
    max_attempts: object = DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True)
class CleanSubmission:
    """A submission that passed `check_submission`: right types, names trimmed."""

    project_name: str
    output_name: str
    template_path: str
    data_path: str
    output_path: str
    priority: int
    nexrender_config: dict[str, Any] | None
    auto_cancel_at: datetime | None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


# --- single values -------------------------------------------------------------------------


def storage_problem(text: str) -> str | None:
    """Why a database could not store `text` (PostgreSQL refuses NUL), or None."""
    if "\x00" in text:
        return "must not contain a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no unpaired surrogates)"
    return None


def _check_int(value: object, field: str, allowed: range) -> int:
    if value is None:
        raise BadUserInput.single(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise BadUserInput.single(field, f"must be an integer from {allowed[0]} to {allowed[-1]}")
    return value


def check_priority(value: object, field: str = "priority") -> int:
    """A priority: an int (not a bool) in 1..10, higher is more urgent."""
    return _check_int(value, field, PRIORITY_RANGE)


def check_max_attempts(value: object, field: str = "max_attempts") -> int:
    """How many claims a job may have before it fails: an int in 1..10."""
    return _check_int(value, field, MAX_ATTEMPTS_RANGE)


def check_progress(value: object, field: str = "progress") -> int:
    """A progress percentage: an int (not a bool) in 0..100."""
    return _check_int(value, field, PROGRESS_RANGE)


def _check_text(value: object, field: str) -> str:
    if value is None:
        raise BadUserInput.single(field, "is required")
    if not isinstance(value, str):
        raise BadUserInput.single(field, "must be a string")
    problem = storage_problem(value)
    if problem is not None:
        raise BadUserInput.single(field, problem)
    return value


def _check_path_text(value: object, field: str) -> str:
    """A path's shape: a storable string no longer than its column. Whether it is a path
    Nexrender can use is a render rule, checked while the job is VALIDATING."""
    text = _check_text(value, field)
    if len(text) > MAX_PATH_LENGTH:
        raise BadUserInput.single(field, f"must be at most {MAX_PATH_LENGTH} characters")
    return text


def _check_bounded(text: str, field: str, limit: int) -> str:
    if not text:
        raise BadUserInput.single(field, "must not be empty")
    if len(text) > limit:
        raise BadUserInput.single(field, f"must be at most {limit} characters")
    return text


def check_reason(value: object, field: str) -> str:
    """An error_message or cancelled_reason: a string without NUL, trimmed non-empty, at most
    4096 characters. Returns it trimmed."""
    return _check_bounded(_check_text(value, field).strip(), field, MAX_REASON_LENGTH)


def check_log_line(value: object, field: str = "log") -> str:
    """A log line: a string without NUL, not blank, at most 4096 characters once trailing
    whitespace (a line break) is removed. Returns it without that trailing whitespace; leading
    indentation is kept."""
    text = _check_text(value, field).rstrip()
    if not text.strip():
        raise BadUserInput.single(field, "must not be empty")
    return _check_bounded(text, field, MAX_REASON_LENGTH)


def _check_name(value: object, field: str, *, file_name: bool = False) -> str:
    name = _check_bounded(_check_text(value, field).strip(), field, MAX_NAME_LENGTH)
    if has_control_characters(name):
        raise BadUserInput.single(field, "must not contain control characters")
    if file_name and ("/" in name or "\\" in name):
        raise BadUserInput.single(field, "must be a file name, without '/' or '\\'")
    if file_name and name in (".", ".."):
        raise BadUserInput.single(field, "must be a file name, not '.' or '..'")
    return name


def _check_auto_cancel_at(value: object, now: datetime) -> datetime | None:
    field = "auto_cancel_at"
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise BadUserInput.single(field, "must be a date and time with a timezone")
    value = check_moment(value, field)
    if value <= (now if now.utcoffset() is not None else now.replace(tzinfo=UTC)):
        raise BadUserInput.single(field, "must be in the future")
    return value


def check_moment(value: datetime, field: str) -> datetime:
    """A date and time with a timezone that exists in UTC (9999-12-31T23:59:59-14:00 does not:
    it is past the last moment a database can store). Returns it in UTC."""
    if value.utcoffset() is None:
        raise BadUserInput.single(field, "must include a timezone")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise BadUserInput.single(
            field, "must be a moment between the years 1 and 9999 in UTC"
        ) from None


# --- nexrender_config as JSON ----------------------------------------------------------------


def _json_problem(error: Exception) -> str:
    text = str(error).lower()
    if isinstance(error, RecursionError):
        return "must be JSON (it is nested too deeply)"
    if "circular" in text:
        return "must be JSON (it contains itself)"
    if "float" in text:
        return "must be JSON (NaN and Infinity are not numbers JSON can hold)"
    if isinstance(error, TypeError):
        return "must be JSON (objects, lists, strings, numbers, true, false and null only)"
    return "must be JSON"


def _json_children(value: object, path: str) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [(f"{path}.{key_in_field(key)}", child) for key, child in value.items()]
    if isinstance(value, list | tuple):
        return [(f"{path}[{index}]", child) for index, child in enumerate(value)]
    return []


def _json_text_problems(value: object, path: str) -> list[FieldError]:
    """Strings (keys included) a database cannot store, and keys that are not strings, at their
    dotted paths, in document order."""
    problems: list[FieldError] = []
    pending: list[tuple[str, object]] = [(path, value)]
    while pending:
        here, item = pending.pop()
        if isinstance(item, str) and (problem := storage_problem(item)) is not None:
            problems.append(FieldError(here, problem))
        if isinstance(item, dict):
            for key in item:
                key_path = f"{here}.{key_in_field(key)}"
                if not isinstance(key, str):
                    problems.append(FieldError(key_path, "must be JSON (keys must be strings)"))
                elif (problem := storage_problem(key)) is not None:
                    problems.append(FieldError(key_path, f"is a key that {problem}"))
        pending.extend(reversed(_json_children(item, here)))
    return problems


def _check_config(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadUserInput.single(_CONFIG, "must be a JSON object")
    try:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise BadUserInput.single(_CONFIG, _json_problem(error)) from None
    problems = _json_text_problems(value, _CONFIG)
    size = len(encoded.encode("utf-8", "surrogatepass"))
    if size > MAX_NEXRENDER_CONFIG_BYTES:
        problems.append(FieldError(_CONFIG, (
            f"must be at most {MAX_NEXRENDER_CONFIG_BYTES} bytes (256 KiB) as compact UTF-8 "
            f"JSON; it is {size} bytes"
        )))  # fmt: skip
    if problems:
        raise BadUserInput(problems)
    loaded: dict[str, Any] = json.loads(encoded)  # a plain JSON copy: tuples become lists
    return loaded


# --- check_submission ----------------------------------------------------------------------


def collect_problems(errors: list[FieldError], check: Callable[[], _T], fallback: _T) -> _T:
    """`check()`, or `fallback` with its refusal's problems added to `errors` (to report every
    failing field at once)."""
    try:
        return check()
    except BadUserInput as refusal:
        errors.extend(refusal.errors)
        return fallback


def check_submission(submission: JobSubmission, *, now: datetime) -> CleanSubmission:
    """The submission with right types and trimmed names, or BadUserInput listing every failing
    field. `now` is timezone-aware (a naive one is read as UTC)."""
    errors: list[FieldError] = []
    s = submission
    clean = CleanSubmission(
        project_name=collect_problems(
            errors, lambda: _check_name(s.project_name, "project_name"), ""
        ),
        output_name=collect_problems(
            errors, lambda: _check_name(s.output_name, "output_name", file_name=True), ""
        ),
        template_path=collect_problems(
            errors, lambda: _check_path_text(s.template_path, "template_path"), ""
        ),
        data_path=collect_problems(errors, lambda: _check_path_text(s.data_path, "data_path"), ""),
        output_path=collect_problems(
            errors, lambda: _check_path_text(s.output_path, "output_path"), ""
        ),
        priority=collect_problems(errors, lambda: check_priority(s.priority), DEFAULT_PRIORITY),
        nexrender_config=collect_problems(errors, lambda: _check_config(s.nexrender_config), None),
        auto_cancel_at=collect_problems(
            errors, lambda: _check_auto_cancel_at(s.auto_cancel_at, now), None
        ),
        max_attempts=collect_problems(
            errors, lambda: check_max_attempts(s.max_attempts), DEFAULT_MAX_ATTEMPTS
        ),
    )
    if errors:
        raise BadUserInput(errors)
    return clean


# --- render_spec_problems ------------------------------------------------------------------


def _data_path_problems(
    clean: CleanSubmission, roots: Sequence[str], schemes: Sequence[str]
) -> list[FieldError]:
    if clean.data_path != INLINE_DATA_PATH:
        return render_path_problems(
            "data_path", clean.data_path, DATA_EXTENSIONS, roots, uri_schemes=schemes
        )
    # The Nexrender job carries its data (data assets), or renders its template as it is.
    if clean.nexrender_config is not None:
        return []
    message = f"may be '{INLINE_DATA_PATH}' only when nexrender_config is given"
    return [FieldError("data_path", message)]


def _output_path_problems(
    clean: CleanSubmission, roots: Sequence[str], schemes: Sequence[str]
) -> list[FieldError]:
    if clean.output_path != WORKER_OUTPUT_PATH:
        return render_path_problems(
            "output_path",
            clean.output_path,
            OUTPUT_EXTENSIONS,
            roots,
            frame_pattern=True,
            uri_schemes=schemes,
        )
    if clean.nexrender_config is not None:
        return []
    message = f"may be '{WORKER_OUTPUT_PATH}' only when nexrender_config is given"
    return [FieldError("output_path", message)]


def render_spec_problems(
    clean: CleanSubmission,
    *,
    allowed_roots: Sequence[str] = (),
    allowed_uri_schemes: Sequence[str] = URI_SCHEMES,
    allowed_actions: Sequence[str] = (),
) -> list[FieldError]:
    """Every business-rule problem of a checked submission, in field order: the three paths
    (form, '..', extension, allowed roots, URI schemes, 'inline'/'worker'), then
    nexrender_config in the order of its JSON: its Nexrender structure, its paths (the same
    rule, without extensions) and its action modules (`OFFICIAL_ACTIONS` plus
    `allowed_actions`). Empty when the job may be queued. Never raises."""
    roots, schemes = tuple(allowed_roots), tuple(allowed_uri_schemes)
    problems = render_path_problems(
        "template_path", clean.template_path, TEMPLATE_EXTENSIONS, roots, uri_schemes=schemes
    )
    problems += _data_path_problems(clean, roots, schemes)
    problems += _output_path_problems(clean, roots, schemes)
    if clean.nexrender_config is not None:
        problems += nexrender_config_problems(
            clean.nexrender_config,
            allowed_roots=roots,
            allowed_uri_schemes=schemes,
            allowed_actions=allowed_actions,
        )
    return problems
