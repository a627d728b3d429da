"""Nexrender's job JSON and rendertrack's job, both ways (shared NEXRENDER.md). Pure.

- In: a POSTed Nexrender job becomes a submission (`submission_of`): the job kept whole as
  nexrender_config, the job's own columns derived from it, Nexrender's priority mapped onto
  1..10, its tags parsed. A worker's PUT becomes a `Report` (`parse_report`).
- Out: a job becomes Nexrender job JSON (`job_view`) or its status view (`status_view`), each
  passing `@nexrender/types`' validate(); `timings` come from the job's history.

States, both ways:

| JobStatus | Nexrender state |
|---|---|
| PENDING, VALIDATING | `created` |
| QUEUED | `queued` |
| RENDERING | `picked` (a pickup's answer), then its stage (`render:dorender`...) or `started` |
| COMPLETED | `finished` |
| FAILED, CANCELLED | `error` (`error` says why; a cancelled job's starts with "Cancelled") |
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from domain.errors import BadUserInput, FieldError
from domain.paths import DATA_EXTENSIONS, names_a_place
from domain.status import JobStage, JobStatus
from domain.tags import parse_tags
from domain.validation import (
    INLINE_DATA_PATH,
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    PRIORITY_RANGE,
    WORKER_OUTPUT_PATH,
    JobSubmission,
    collect_problems,
)

CREATED, QUEUED, PICKED, STARTED = "created", "queued", "picked", "started"
FINISHED, ERROR = "finished", "error"
RENDER_PREFIX = "render:"

# Nexrender's `render:*` states (@nexrender/core runs them in this order) and the stage each is.
STAGE_OF_STATE: Mapping[str, JobStage] = {
    "render:setup": JobStage.SETUP,
    "render:predownload": JobStage.DOWNLOADING,
    "render:download": JobStage.DOWNLOADING,
    "render:postdownload": JobStage.DOWNLOADING,
    "render:prerender": JobStage.PRERENDER,
    "render:script": JobStage.PRERENDER,
    "render:dorender": JobStage.RENDERING,
    "render:postrender": JobStage.POSTRENDER,
    "render:cleanup": JobStage.CLEANUP,
}
# The state a stage is shown as. UPLOADING comes from GraphQL reporters only: Nexrender uploads
# in its postrender actions.
STATE_OF_STAGE: Mapping[JobStage, str] = {
    JobStage.SETUP: "render:setup",
    JobStage.DOWNLOADING: "render:download",
    JobStage.PRERENDER: "render:prerender",
    JobStage.RENDERING: "render:dorender",
    JobStage.POSTRENDER: "render:postrender",
    JobStage.UPLOADING: "render:postrender",
    JobStage.CLEANUP: "render:cleanup",
}
_STATE_OF_STATUS: Mapping[JobStatus, str] = {
    JobStatus.PENDING: CREATED,
    JobStatus.VALIDATING: CREATED,
    JobStatus.QUEUED: QUEUED,
    JobStatus.RENDERING: STARTED,
    JobStatus.COMPLETED: FINISHED,
    JobStatus.FAILED: ERROR,
    JobStatus.CANCELLED: ERROR,
}

# Nexrender's priority is any integer, 0 by default, larger first; rendertrack's is 1..10 with
# 5 the default. Nexrender's default lands on rendertrack's and the order is kept: p + 5,
# clamped (so -4..5 keep their distinctions; everything at or below -4, or at or above 5, is
# one band).
PRIORITY_OFFSET = 5
# The largest integer a JavaScript client reads back exactly (Number.MAX_SAFE_INTEGER).
MAX_NEXRENDER_PRIORITY = 2**53 - 1
NO_ERROR_MESSAGE = "the worker reported an error without a message"
REPORTED_ERROR = "the worker reported an error: "
# A job submitted without a nexrender_config still has to answer as a valid Nexrender job.
NO_COMPOSITION = "(none: submitted without a nexrender_config)"
# What After Effects renders to on Windows when a job names no outputExt (@nexrender/core).
DEFAULT_OUTPUT_EXT = "avi"
_SEQUENCE_EXTS = ("jpeg", "jpg", "png", "tif", "tga")  # core renders these as frame sequences
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,16}")
_SEPARATORS = re.compile(r"[\\/]")
_DATA_ASSET_TYPES = ("static", "script")

_T = TypeVar("_T")


# --- states and priorities ---------------------------------------------------------------------


def nexrender_state(status: JobStatus, stage: JobStage | None, *, picked: bool = False) -> str:
    status = JobStatus(status)
    if status is JobStatus.RENDERING:
        if picked:
            return PICKED
        return STATE_OF_STAGE[JobStage(stage)] if stage is not None else STARTED
    return _STATE_OF_STATUS[status]


def priority_from_nexrender(value: object, field: str = "priority") -> int:
    """rendertrack's priority (1..10) for Nexrender's (any integer, default 0, larger first)."""
    if value is None:
        value = 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadUserInput.single(field, "must be an integer (larger is picked first)")
    if value != int(value):
        raise BadUserInput.single(field, "must be an integer (larger is picked first)")
    if abs(value) > MAX_NEXRENDER_PRIORITY:
        raise BadUserInput.single(
            field, f"must be an integer from -{MAX_NEXRENDER_PRIORITY} to {MAX_NEXRENDER_PRIORITY}"
        )
    low, high = PRIORITY_RANGE[0], PRIORITY_RANGE[-1]
    return max(low, min(high, int(value) + PRIORITY_OFFSET))


def nexrender_priority(submitted: object, priority: int) -> int:
    """The Nexrender priority a job answers with: the one it was submitted with while that still
    maps onto its priority, else its priority shifted back (an admin changed it since)."""
    try:
        same = submitted is not None and priority_from_nexrender(submitted) == priority
    except BadUserInput:
        same = False
    if same and isinstance(submitted, int | float):
        return int(submitted)
    return priority - PRIORITY_OFFSET


# --- a POSTed job ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NexrenderSubmission:
    submission: JobSubmission
    tags: tuple[str, ...]
    # Each derived field and the place in the job JSON it came from, so that a problem with a
    # derived value names what the client wrote.
    sources: Mapping[str, str]


def submission_of(job: Mapping[str, Any], *, uid: str) -> NexrenderSubmission:
    """The submission for a Nexrender job (kept whole as nexrender_config). `uid` is the id the
    job will have: a worker's output is named after it.

    - template_path: `template.src`;
    - project_name: the job's `name` when it has one, else the file name of `template.src`
      without its extension, else `template.composition`;
    - data_path: the `src` of the first `static` or `script` asset that is a .json, .csv or .tsv
      file, else "inline" (the job carries its data in `data` assets, or needs none);
    - output_path: the `output` of the last postrender action whose output is an absolute path
      or a URI (a relative one stays in the worker's job folder), else `template.output`, else
      the job's `output`, else "worker" (it stays where the worker renders it);
    - output_name: the file name of output_path, else `<uid>.<template.outputExt>` (`avi` when
      none, as After Effects on Windows; a frame sequence `<uid>_[#####].<ext>`).
    BadUserInput for a priority or tags Nexrender would not take."""
    errors: list[FieldError] = []
    priority = collect_problems(errors, lambda: priority_from_nexrender(job.get("priority")), 5)
    tags = collect_problems(errors, lambda: parse_tags(_tags_value(job.get("tags"))), ())
    if errors:
        raise BadUserInput(errors)
    template = job.get("template")
    template = template if isinstance(template, Mapping) else {}
    sources: dict[str, str] = {"template_path": "template.src", "nexrender_config": "(job)"}

    project_name, sources["project_name"] = _project_name(job, template)
    data_path, sources["data_path"] = _data_path(job.get("assets"))
    output_path, sources["output_path"] = _output_path(job, template)
    output_name = _file_name(output_path) if output_path != WORKER_OUTPUT_PATH else None
    sources["output_name"] = sources["output_path"]
    if not output_name:
        output_name = _worker_output_name(uid, template.get("outputExt"))
        sources["output_name"] = "template.outputExt"
    submission = JobSubmission(
        project_name=project_name,
        output_name=output_name,
        template_path=template.get("src"),
        data_path=data_path,
        output_path=output_path,
        priority=priority,
        nexrender_config=dict(job),
    )
    return NexrenderSubmission(submission=submission, tags=tags, sources=sources)


def _tags_value(value: object) -> object:
    # Nexrender's own default is "", and some clients send a list.
    return value if value not in ("", []) else None


def _project_name(job: Mapping[str, Any], template: Mapping[str, Any]) -> tuple[str, str]:
    name = job.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()[:MAX_NAME_LENGTH], "name"
    stem = _stem(_file_name(template.get("src")))
    if stem:
        return stem[:MAX_NAME_LENGTH], "template.src"
    composition = template.get("composition")
    if isinstance(composition, str) and composition.strip():
        return composition.strip()[:MAX_NAME_LENGTH], "template.composition"
    return "Nexrender job", "template"


def _data_path(assets: object) -> tuple[str, str]:
    if isinstance(assets, list):
        for index, asset in enumerate(assets):
            if not isinstance(asset, Mapping) or asset.get("type") not in _DATA_ASSET_TYPES:
                continue
            src = asset.get("src")
            if isinstance(src, str) and _path_part(src).lower().endswith(DATA_EXTENSIONS):
                return src, f"assets[{index}].src"
    return INLINE_DATA_PATH, "assets"


def _output_path(job: Mapping[str, Any], template: Mapping[str, Any]) -> tuple[str, str]:
    actions = job.get("actions")
    postrender = actions.get("postrender") if isinstance(actions, Mapping) else None
    if isinstance(postrender, list):
        for index in range(len(postrender) - 1, -1, -1):
            action = postrender[index]
            output = action.get("output") if isinstance(action, Mapping) else None
            if isinstance(output, str) and names_a_place(output):
                return output, f"actions.postrender[{index}].output"
    candidates = ((template.get("output"), "template.output"), (job.get("output"), "output"))
    for output, source in candidates:
        if isinstance(output, str) and names_a_place(output):
            return output, source
    return WORKER_OUTPUT_PATH, "actions.postrender"


def _worker_output_name(uid: str, ext: object) -> str:
    extension = ext if isinstance(ext, str) and _EXTENSION.fullmatch(ext) else DEFAULT_OUTPUT_EXT
    if extension in _SEQUENCE_EXTS:
        return f"{uid}_[#####].{extension}"
    return f"{uid}.{extension}"


def _path_part(reference: str) -> str:
    """The path of a URI (undecoded), or the reference itself for a local path."""
    if "://" in reference:
        try:
            return urlsplit(reference).path
        except ValueError:
            return reference
    return reference


def _file_name(reference: object) -> str:
    if not isinstance(reference, str):
        return ""
    path = _path_part(reference)
    if "://" in reference:
        path = unquote(path)
    return _SEPARATORS.split(path)[-1].strip()


def _stem(file_name: str) -> str:
    stem, dot, _ = file_name.rpartition(".")
    return (stem if dot and stem else file_name).strip()


def fields_in_job(errors: Iterable[FieldError], sources: Mapping[str, str]) -> list[FieldError]:
    """Problems named by where they are in the POSTed job JSON: `nexrender_config.x` is `x`, a
    derived field is the place it came from (`template_path` is `template.src`). Each problem
    once (a template's src can break the same rule as template_path and as itself)."""
    found: list[FieldError] = []
    for error in errors:
        field = error.field
        if field.startswith("nexrender_config."):
            field = field.removeprefix("nexrender_config.")
        else:
            head, dot, rest = field.partition(".")
            field = sources.get(head, head) + (dot + rest if dot else "")
        named = FieldError(field, error.message)
        if named not in found:
            found.append(named)
    return found


# --- a worker's PUT ----------------------------------------------------------------------------


class ReportKind(StrEnum):
    ACTIVE = "ACTIVE"  # picked, started, render:*: still at it
    FINISHED = "FINISHED"
    ERROR = "ERROR"
    QUEUED = "QUEUED"  # handed back: the worker is shutting down


@dataclass(frozen=True)
class Report:
    kind: ReportKind
    # `started` or `picked`: what a worker sends when it takes a queued job.
    claims: bool = False
    stage: JobStage | None = None
    progress: int | None = None
    # ERROR: why. ACTIVE: an error the worker already saw (1.63 sends `started` with the error
    # line as soon as aerender prints it), kept in the log.
    error: str | None = None

    @property
    def log_line(self) -> str | None:
        """What an ACTIVE report's error leaves in the job's log."""
        if self.kind is not ReportKind.ACTIVE or self.error is None:
            return None
        return _cut(REPORTED_ERROR + self.error)

    @property
    def says_something(self) -> bool:
        """Whether an ACTIVE report carries more than "still alive"."""
        return self.stage is not None or self.progress is not None or self.error is not None


_ACTIVE_STATES = (PICKED, STARTED)
_KINDS = {FINISHED: ReportKind.FINISHED, ERROR: ReportKind.ERROR, QUEUED: ReportKind.QUEUED}


def parse_report(body: Mapping[str, Any]) -> Report:
    """What a PUT says, whatever its shape (a full job or a status view): `state` (none: still
    at it), `renderProgress` and `error`. Every other field is the worker's copy of the job and
    is not stored."""
    state = body.get("state")
    if state is None:
        return Report(ReportKind.ACTIVE, progress=_progress(body.get("renderProgress")))
    if not isinstance(state, str) or not (
        state in _ACTIVE_STATES or state in _KINDS or state.startswith(RENDER_PREFIX)
    ):
        states = ", ".join((PICKED, STARTED, "render:*", FINISHED, ERROR, QUEUED))
        raise BadUserInput.single("state", f"must be one of {states}")
    kind = _KINDS.get(state, ReportKind.ACTIVE)
    if kind is ReportKind.ERROR:
        return Report(kind, error=error_text(body.get("error")))
    if kind is not ReportKind.ACTIVE:
        return Report(kind)
    raw_error = body.get("error")
    return Report(
        kind,
        claims=state in _ACTIVE_STATES,
        stage=STAGE_OF_STATE.get(state),
        progress=_progress(body.get("renderProgress")),
        error=error_text(raw_error) if _has_message(raw_error) else None,
    )


def _progress(value: object) -> int | None:
    """A percentage, whatever number a worker sends; anything else is no report of progress."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, min(100, math.floor(value)))


def _has_message(value: object) -> bool:
    return bool(value) and error_text(value) != NO_ERROR_MESSAGE


def error_text(value: object) -> str:
    """An error as text a job can keep: a string as it is, a list of lines joined by blank lines
    (as @nexrender/types shows them), an object's `message` (an Error serialised to JSON is
    `{}`: then a clear message that there was none), cut to the error column's length."""
    if isinstance(value, list):
        parts = [error_text(item) for item in value if item not in (None, "", {}, [])]
        text = "\n\n".join(part for part in parts if part != NO_ERROR_MESSAGE)
    elif isinstance(value, Mapping):
        message = value.get("message")
        if isinstance(message, str):
            text = message
        elif value:
            text = json.dumps(value, ensure_ascii=False, default=str)
        else:
            text = ""
    elif value is None or isinstance(value, bool):
        text = ""
    else:
        text = str(value)
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return _cut(text) if text else NO_ERROR_MESSAGE


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"


def acknowledges_end(status: JobStatus, report: Report) -> bool:
    """An `error` report on a job that already ended as FAILED or CANCELLED agrees with it: it is
    answered with the job as it stands, not refused. Worker 1.8.16 sends `error` after its
    `finished` was refused, and a refused `error` ends its loop."""
    return report.kind is ReportKind.ERROR and JobStatus(status) in (
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    )


def may_acknowledge_lost_job(report: Report, *, holds_it: bool, held_it: bool) -> bool:
    """An `error` report from a worker about a job it held once and holds no more is taken
    note of instead of refused: worker 1.8.16 reports `error` when its `finished` was refused
    (another worker took the job over), and a refused `error` stops it for good."""
    return report.kind is ReportKind.ERROR and held_it and not holds_it


def acknowledged_error(report: Mapping[str, Any], uid: str) -> dict[str, Any]:
    """The answer to a worker's `error` report on a job that is no longer its own: its own
    report back (nothing it did not send is told), as the job it sent, now in error."""
    return {**report, "uid": uid, "state": "error"}


# --- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFacts:
    """What a job's Nexrender JSON is built from."""

    uid: str
    status: JobStatus
    stage: JobStage | None
    progress: int
    priority: int
    tags: str | None
    config: Mapping[str, Any] | None
    template_path: str
    error_message: str | None
    cancelled_reason: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    creator: str | None  # who submitted it, when the caller may know
    executor: str | None  # the worker holding it (or that held it last)
    timings: Mapping[str, int]
    picked: bool = False


def job_view(facts: JobFacts) -> dict[str, Any]:
    """The job as Nexrender job JSON: the submitted job with @nexrender/types' defaults, and
    everything rendertrack keeps (uid, state, progress, error, times) over it."""
    config = dict(facts.config or {})
    job: dict[str, Any] = {
        "uid": facts.uid,
        "type": "default",
        "state": "",
        "output": "",
        "tags": "",
        "priority": 0,
        "timings": {},
        "template": {},
        "assets": [],
        "actions": {"prerender": [], "postrender": []},
        **config,
    }
    job.update(_shown_spec(job, facts.template_path))
    status = _status_fields(facts)
    job.update(
        {
            "uid": facts.uid,
            "state": status["state"],
            "tags": status["tags"] or "",
            "priority": nexrender_priority(config.get("priority"), facts.priority),
            "renderProgress": status["renderProgress"],
            "error": status["error"],
            "createdAt": status["createdAt"],
            "updatedAt": status["updatedAt"],
            "startedAt": status["startedAt"],
            "finishedAt": status["finishedAt"],
            "errorAt": status["errorAt"],
            "creator": facts.creator,
            "executor": facts.executor,
            "timings": status["timings"],
        }
    )
    return job


def _shown_spec(job: Mapping[str, Any], template_path: str) -> dict[str, Any]:
    """The template, assets and actions as a Nexrender client accepts them. A job submitted
    over POST always is; one submitted over GraphQL may have failed validation for a broken
    render spec (or have none): its broken parts are left out of the answer (its
    nexrenderConfig over GraphQL is the spec as submitted)."""
    raw = job.get("template")
    template = dict(raw) if isinstance(raw, Mapping) else {}
    if not _js_truthy(template.get("src")):
        template["src"] = template_path
    if not _js_truthy(template.get("composition")):
        template["composition"] = NO_COMPOSITION
    assets = job.get("assets")
    actions = job.get("actions")
    actions = dict(actions) if isinstance(actions, Mapping) else {}
    for stage in ("prerender", "postrender"):
        steps = actions.get(stage)
        if _js_truthy(steps):
            actions[stage] = [step for step in _list(steps) if _js_truthy(_get(step, "module"))]
    return {
        "template": template,
        "assets": [asset for asset in _list(assets) if _valid_asset(asset)],
        "actions": actions,
    }


def _valid_asset(asset: object) -> bool:
    """What @nexrender/types' validate() asks of an asset."""
    if not isinstance(asset, Mapping):
        return False
    kind = asset.get("type")
    layered = _js_truthy(asset.get("layerName")) or _js_truthy(asset.get("layerIndex"))
    if kind in ("image", "audio", "video"):
        return _js_truthy(asset.get("src")) and layered
    if kind == "data":
        has_value = "value" in asset or _js_truthy(asset.get("expression"))
        return layered and has_value and _js_truthy(asset.get("property"))
    return kind in _DATA_ASSET_TYPES and _js_truthy(asset.get("src"))


def _js_truthy(value: object) -> bool:
    return isinstance(value, Mapping | list) or bool(value)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _get(value: object, key: str) -> object:
    return value.get(key) if isinstance(value, Mapping) else None


def status_view(facts: JobFacts) -> dict[str, Any]:
    """The status view (@nexrender/types' getRenderingStatus)."""
    config = facts.config or {}
    kind = config.get("type")
    fields = _status_fields(facts)
    return {
        "uid": facts.uid,
        "state": fields["state"],
        "type": kind if isinstance(kind, str) and kind else "default",
        "tags": fields["tags"],
        "renderProgress": fields["renderProgress"],
        "error": fields["error"],
        "createdAt": fields["createdAt"],
        "updatedAt": fields["updatedAt"],
        "startedAt": fields["startedAt"],
        "finishedAt": fields["finishedAt"],
        "errorAt": fields["errorAt"],
        "jobCreator": facts.creator,
        "jobExecutor": facts.executor,
        "timings": fields["timings"],
    }


def _status_fields(facts: JobFacts) -> dict[str, Any]:
    status = JobStatus(facts.status)
    ended = facts.completed_at if status in (JobStatus.FAILED, JobStatus.CANCELLED) else None
    return {
        "state": nexrender_state(status, facts.stage, picked=facts.picked),
        "tags": facts.tags or None,
        "renderProgress": facts.progress,
        "error": _error_of(facts),
        "createdAt": js_time(facts.created_at),
        "updatedAt": js_time(facts.updated_at),
        "startedAt": js_time(facts.started_at),
        "finishedAt": js_time(facts.completed_at if status is JobStatus.COMPLETED else None),
        "errorAt": js_time(ended),
        "timings": dict(facts.timings),
    }


def _error_of(facts: JobFacts) -> str | None:
    status = JobStatus(facts.status)
    if status is JobStatus.CANCELLED:
        return f"Cancelled: {facts.cancelled_reason}" if facts.cancelled_reason else "Cancelled"
    if status is JobStatus.FAILED:
        return facts.error_message
    return None


def js_time(moment: datetime | None) -> str | None:
    """A time as JavaScript's Date serialises to JSON: `2026-01-31T12:00:00.000Z`."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timings_of(
    entries: Sequence[tuple[JobStatus, JobStage | None, datetime]],
    *,
    created_at: datetime,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    status: JobStatus | None = None,
) -> dict[str, int]:
    """Nexrender's `timings`: each state the job has been in, with the first time it entered it
    (milliseconds since the epoch, as @nexrender/core stamps them), in the order they came.
    `entries` are (status, stage, first time) from the job's history; the job's own times fill
    in what a pruned history no longer holds."""
    first: dict[str, datetime] = {}
    for entry_status, stage, at in entries:
        name = nexrender_state(entry_status, stage)
        if name not in first or at < first[name]:
            first[name] = at
    first.setdefault(CREATED, created_at)
    if started_at is not None:
        first.setdefault(STARTED, started_at)
    if completed_at is not None and status is not None:
        ended = nexrender_state(status, None)
        if ended in (FINISHED, ERROR):
            first.setdefault(ended, completed_at)
    ordered = sorted(first.items(), key=lambda item: item[1])
    return {name: _epoch_ms(at) for name, at in ordered}


def _epoch_ms(moment: datetime) -> int:
    utc = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(utc.timestamp() * 1000)
