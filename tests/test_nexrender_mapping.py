"""domain/nexrender_jobs.py (and the stage and tag rules it relies on), without a database:
states both ways, priorities, what a POSTed job derives, what a PUT says, and answers that
@nexrender/types' validate() accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import nexrender_jobs as nx
from domain.errors import BadUserInput, FieldError, InvalidTransition
from domain.events import Duty, JobEvent, JobEventKind, kind_of_change
from domain.leases import may_reclaim
from domain.lifecycle import JobState, check_stage, plan_stage, plan_transition
from domain.nexrender_jobs import JobFacts, ReportKind
from domain.status import JobStage, JobStatus
from domain.tags import format_tags, parse_tags, tags_of
from domain.validation import MAX_REASON_LENGTH
from tests.nexrender_types import STATUS_KEYS, validate, validate_status

S = JobStatus
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UID = "ck0000000000000000000000a"


def job_json(**changes: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "template": {"src": "file:///mnt/templates/Promo%20Spot.aep", "composition": "main"},
        "assets": [],
        "actions": {"postrender": []},
    }
    job.update(changes)
    return job


def derive(**changes: Any) -> nx.NexrenderSubmission:
    return nx.submission_of(job_json(**changes), uid=UID)


# --- states ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (S.PENDING, "created"),
        (S.VALIDATING, "created"),
        (S.QUEUED, "queued"),
        (S.RENDERING, "started"),
        (S.COMPLETED, "finished"),
        (S.FAILED, "error"),
        (S.CANCELLED, "error"),
    ],
)
def test_each_status_has_its_nexrender_state(status: JobStatus, state: str) -> None:
    assert nx.nexrender_state(status, None) == state


def test_a_rendering_job_shows_its_stage_and_a_pickup_shows_picked() -> None:
    assert nx.nexrender_state(S.RENDERING, JobStage.RENDERING) == "render:dorender"
    assert nx.nexrender_state(S.RENDERING, JobStage.DOWNLOADING) == "render:download"
    assert nx.nexrender_state(S.RENDERING, None, picked=True) == "picked"


def test_every_render_state_of_nexrender_core_has_a_stage_that_shows_as_a_render_state() -> None:
    core = ["setup", "predownload", "download", "postdownload", "prerender", "script"]
    core += ["dorender", "postrender", "cleanup"]
    assert sorted(nx.STAGE_OF_STATE) == sorted(f"render:{name}" for name in core)
    for state, stage in nx.STAGE_OF_STATE.items():
        shown = nx.STATE_OF_STAGE[stage]
        assert shown.startswith("render:") and nx.STAGE_OF_STATE[shown] is stage, state
    assert set(nx.STATE_OF_STAGE) == set(JobStage)


# --- priorities --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nexrender", "rendertrack"),
    [(None, 5), (0, 5), (1, 6), (5, 10), (99, 10), (-1, 4), (-4, 1), (-50, 1), (2.0, 7)],
)
def test_nexrender_priorities_map_onto_one_to_ten(nexrender: object, rendertrack: int) -> None:
    assert nx.priority_from_nexrender(nexrender) == rendertrack


def test_the_priority_mapping_keeps_the_order() -> None:
    mapped = [nx.priority_from_nexrender(value) for value in range(-20, 21)]
    assert mapped == sorted(mapped)


@pytest.mark.parametrize("value", [True, "5", 1.5, float("nan"), [], {}])
def test_a_priority_that_is_no_integer_is_refused(value: object) -> None:
    with pytest.raises(BadUserInput) as refused:
        nx.priority_from_nexrender(value)
    assert [error.field for error in refused.value.errors] == ["priority"]


def test_the_answered_priority_is_the_submitted_one_until_an_admin_changes_it() -> None:
    assert nx.nexrender_priority(100, 10) == 100
    assert nx.nexrender_priority(-3, 2) == -3
    assert nx.nexrender_priority(None, 5) == 0
    assert nx.nexrender_priority(100, 7) == 2  # setJobPriority(7) since
    assert nx.nexrender_priority("high", 5) == 0


# --- a POSTed job ------------------------------------------------------------------------------


def test_a_minimal_job_derives_every_column() -> None:
    derived = derive()
    submission = derived.submission
    assert submission.template_path == "file:///mnt/templates/Promo%20Spot.aep"
    assert submission.project_name == "Promo Spot"
    assert submission.data_path == "inline"
    assert submission.output_path == "worker"
    assert submission.output_name == f"{UID}.avi"
    assert submission.priority == 5
    assert submission.nexrender_config == job_json()
    assert derived.tags == ()


def test_a_name_wins_over_the_template_file_and_the_composition_is_the_last_resort() -> None:
    assert derive(name="  Spring promo ").submission.project_name == "Spring promo"
    nameless = job_json(template={"src": "https://cdn.example.com/", "composition": "Final"})
    assert nx.submission_of(nameless, uid=UID).submission.project_name == "Final"


def test_the_data_path_is_the_first_static_or_script_data_file() -> None:
    assets = [
        {"type": "image", "src": "/mnt/in/logo.png", "layerName": "logo"},
        {"type": "static", "src": "/mnt/in/readme.txt"},
        {"type": "static", "src": "https://api.example.com/rows.JSON?token=1"},
        {"type": "script", "src": "/mnt/in/other.csv"},
        {"type": "data", "layerName": "title", "property": "Source Text", "value": "Hi"},
    ]
    derived = derive(assets=assets)
    assert derived.submission.data_path == "https://api.example.com/rows.JSON?token=1"
    assert derived.sources["data_path"] == "assets[2].src"
    assert derive(assets=assets[4:]).submission.data_path == "inline"


def test_the_output_path_is_the_last_postrender_output_that_names_a_place() -> None:
    postrender = [
        {"module": "@nexrender/action-copy", "output": "/mnt/renders/first.mp4"},
        {"module": "@nexrender/action-encode", "output": "encoded.mp4", "preset": "mp4"},
        {"module": "@nexrender/action-copy", "input": "encoded.mp4", "output": "s3://b/o/x.mov"},
        {"module": "@nexrender/action-encode", "output": "again.mp4"},  # relative: job folder
    ]
    derived = derive(actions={"postrender": postrender}, output="/mnt/renders/job-output.mp4")
    assert derived.submission.output_path == "s3://b/o/x.mov"
    assert derived.submission.output_name == "x.mov"
    assert derived.sources["output_path"] == "actions.postrender[2].output"


def test_without_a_postrender_output_the_template_then_the_job_output_count() -> None:
    template = {"src": "/mnt/t/a.aep", "composition": "c", "output": "/mnt/out/t.mov"}
    assert derive(template=template, output="/mnt/out/j.mp4").submission.output_path == (
        "/mnt/out/t.mov"
    )
    assert derive(output="C:\\renders\\spot.mp4").submission.output_name == "spot.mp4"


@pytest.mark.parametrize(
    ("ext", "name"),
    [("mp4", f"{UID}.mp4"), ("png", f"{UID}_[#####].png"), ("../x", f"{UID}.avi")],
)
def test_a_worker_output_is_named_after_the_job(ext: str, name: str) -> None:
    template = {"src": "/mnt/t/a.aep", "composition": "c", "outputExt": ext}
    assert derive(template=template).submission.output_name == name


def test_priority_and_tags_are_read_and_refused_together() -> None:
    derived = derive(priority=3, tags=" gpu, fast,gpu,, ")
    assert derived.submission.priority == 8
    assert derived.tags == ("gpu", "fast")
    with pytest.raises(BadUserInput) as refused:
        derive(priority="urgent", tags="a/b")
    assert [error.field for error in refused.value.errors] == ["priority", "tags"]


def test_problems_are_named_where_the_client_wrote_them() -> None:
    sources = derive(assets=[{"type": "static", "src": "/d/rows.json"}]).sources
    errors = [
        FieldError("template_path", "must end in .aep or .aepx"),
        FieldError("nexrender_config.template.src", "is outside the allowed roots"),
        FieldError("template_path", "is outside the allowed roots"),
        FieldError("data_path", "is outside the allowed roots"),
        FieldError("nexrender_config", "must be at most 262144 bytes"),
        FieldError("nexrender_config.actions.postrender[0].module", "must be one of ..."),
    ]
    assert nx.fields_in_job(errors, sources) == [
        FieldError("template.src", "must end in .aep or .aepx"),
        FieldError("template.src", "is outside the allowed roots"),
        FieldError("assets[0].src", "is outside the allowed roots"),
        FieldError("(job)", "must be at most 262144 bytes"),
        FieldError("actions.postrender[0].module", "must be one of ..."),
    ]


# --- a worker's PUT ----------------------------------------------------------------------------


def test_reports_whatever_their_shape() -> None:
    started = nx.parse_report({**job_json(), "uid": UID, "state": "started", "error": None})
    assert started == nx.Report(ReportKind.ACTIVE, claims=True)
    progress = nx.parse_report({"uid": UID, "state": "render:dorender", "renderProgress": 25.7})
    assert progress == nx.Report(ReportKind.ACTIVE, stage=JobStage.RENDERING, progress=25)
    assert nx.parse_report({"renderProgress": 140}).progress == 100
    assert nx.parse_report({"renderProgress": "50"}).progress is None
    assert nx.parse_report({"renderProgress": True}).progress is None
    assert nx.parse_report({"state": "finished", "renderProgress": 100}).kind is ReportKind.FINISHED
    assert nx.parse_report({"state": "queued"}).kind is ReportKind.QUEUED
    assert nx.parse_report({"state": "render:unknown"}).stage is None


def test_an_error_seen_while_rendering_travels_with_the_report() -> None:
    report = nx.parse_report({"state": "started", "error": "aerender Error: missing layer"})
    assert report.kind is ReportKind.ACTIVE and report.error == "aerender Error: missing layer"
    assert nx.parse_report({"state": "started", "error": {}}).error is None


@pytest.mark.parametrize("state", ["created", "done", "", 3, "RENDERING"])
def test_an_unknown_state_is_refused(state: object) -> None:
    with pytest.raises(BadUserInput) as refused:
        nx.parse_report({"state": state})
    assert [error.field for error in refused.value.errors] == ["state"]


@pytest.mark.parametrize(
    ("error", "text"),
    [
        ("aerender Error: x", "aerender Error: x"),
        (["first", "", "second"], "first\n\nsecond"),
        ({}, nx.NO_ERROR_MESSAGE),
        ([], nx.NO_ERROR_MESSAGE),
        (None, nx.NO_ERROR_MESSAGE),
        ("   ", nx.NO_ERROR_MESSAGE),
        ({"message": "boom", "stack": "..."}, "boom"),
        ({"code": "ENOENT"}, '{"code": "ENOENT"}'),
        ("nul\x00byte", "nulbyte"),
        (42, "42"),
    ],
)
def test_error_texts(error: object, text: str) -> None:
    assert nx.parse_report({"state": "error", "error": error}).error == text


def test_a_long_error_is_cut_to_what_a_job_keeps() -> None:
    text = nx.error_text("x" * 10_000)
    assert len(text) == MAX_REASON_LENGTH and text.endswith("…")
    line = nx.parse_report({"state": "started", "error": "y" * 10_000}).log_line
    assert line is not None and len(line) == MAX_REASON_LENGTH
    assert line.startswith(nx.REPORTED_ERROR)
    assert nx.parse_report({"state": "error", "error": "z"}).log_line is None


def test_an_error_report_agrees_with_a_job_that_ended_in_error() -> None:
    error = nx.Report(ReportKind.ERROR, error="x")
    assert nx.acknowledges_end(S.CANCELLED, error) and nx.acknowledges_end(S.FAILED, error)
    assert not nx.acknowledges_end(S.COMPLETED, error)
    assert not nx.acknowledges_end(S.CANCELLED, nx.Report(ReportKind.FINISHED))


# --- answers -----------------------------------------------------------------------------------


def facts(**changes: Any) -> JobFacts:
    values: dict[str, Any] = {
        "uid": UID,
        "status": S.QUEUED,
        "stage": None,
        "progress": 0,
        "priority": 5,
        "tags": None,
        "config": job_json(),
        "template_path": "/mnt/templates/promo.aep",
        "error_message": None,
        "cancelled_reason": None,
        "created_at": T0,
        "updated_at": T0 + timedelta(seconds=1),
        "started_at": None,
        "completed_at": None,
        "creator": "user@example.com",
        "executor": None,
        "timings": {"created": 1},
    }
    values.update(changes)
    return JobFacts(**values)


BROKEN_SPECS = [
    {"template": {"src": "/t.aep"}},
    {"template": "x", "assets": "y", "actions": []},
    {
        "template": {"src": "", "composition": "main"},
        "assets": [
            {"type": "image", "src": "/a.png"},
            {"type": "data", "layerName": "t", "property": "Source Text", "value": ""},
            {"type": "font", "src": "/f.ttf"},
            None,
        ],
        "actions": {"prerender": [{"input": "x"}], "postrender": {"module": "m"}},
    },
]


@pytest.mark.parametrize("status", list(JobStatus))
@pytest.mark.parametrize("config", [job_json(), None, *BROKEN_SPECS])
def test_every_answer_passes_nexrender_validate(
    status: JobStatus, config: dict[str, Any] | None
) -> None:
    stage = JobStage.POSTRENDER if status is S.RENDERING else None
    shown = facts(status=status, stage=stage, config=config, cancelled_reason="r")
    assert validate(nx.job_view(shown))
    assert validate_status(nx.status_view(shown))


def test_the_job_view_is_the_submitted_job_under_what_rendertrack_keeps() -> None:
    config = job_json(uid="client-uid", state="created", priority=100, tags="a", custom={"x": 1})
    view = nx.job_view(
        facts(
            status=S.FAILED,
            config=config,
            priority=10,
            tags="a,b",
            progress=40,
            started_at=T0,
            completed_at=T0 + timedelta(minutes=2),
            error_message="aerender Error: x",
            executor="render01",
        )
    )
    assert view["uid"] == UID and view["state"] == "error" and view["priority"] == 100
    assert view["tags"] == "a,b" and view["renderProgress"] == 40
    assert view["error"] == "aerender Error: x" and view["custom"] == {"x": 1}
    assert view["createdAt"] == "2026-03-01T12:00:00.000Z"
    assert view["startedAt"] == "2026-03-01T12:00:00.000Z"
    assert view["errorAt"] == "2026-03-01T12:02:00.000Z" and view["finishedAt"] is None
    assert (view["creator"], view["executor"]) == ("user@example.com", "render01")
    assert view["actions"] == {"postrender": []} and view["type"] == "default"


def test_a_cancelled_job_shows_error_with_its_reason() -> None:
    shown = facts(status=S.CANCELLED, cancelled_reason="not needed", completed_at=T0)
    status = nx.status_view(shown)
    assert tuple(status) == STATUS_KEYS
    assert status["state"] == "error" and status["error"] == "Cancelled: not needed"
    assert status["errorAt"] == "2026-03-01T12:00:00.000Z"


def test_timings_are_the_first_entry_into_each_state_in_order() -> None:
    at = [T0 + timedelta(seconds=n) for n in range(8)]
    entries = [
        (S.PENDING, None, at[0]),
        (S.VALIDATING, None, at[0]),
        (S.QUEUED, None, at[1]),
        (S.RENDERING, None, at[2]),
        (S.RENDERING, JobStage.RENDERING, at[3]),
        (S.QUEUED, None, at[4]),  # requeued, then claimed again
        (S.RENDERING, None, at[5]),
        (S.RENDERING, JobStage.POSTRENDER, at[6]),
        (S.COMPLETED, None, at[7]),
    ]
    timings = nx.timings_of(entries[::-1], created_at=at[0], status=S.COMPLETED)
    ms = int(T0.timestamp() * 1000)
    assert timings == {
        "created": ms,
        "queued": ms + 1000,
        "started": ms + 2000,
        "render:dorender": ms + 3000,
        "render:postrender": ms + 6000,
        "finished": ms + 7000,
    }
    assert list(timings) == sorted(timings, key=timings.__getitem__)


def test_a_pruned_history_falls_back_on_the_jobs_own_times() -> None:
    timings = nx.timings_of([], created_at=T0, started_at=T0, completed_at=T0, status=S.CANCELLED)
    assert set(timings) == {"created", "started", "error"}


# --- stage, tags and reclaims --------------------------------------------------------------


def state(status: JobStatus, stage: JobStage | None = None) -> JobState:
    return JobState(id=UID, status=status, progress=10, started_at=T0, stage=stage)


def test_a_stage_is_reported_while_rendering_only() -> None:
    assert plan_stage(state(S.RENDERING), JobStage.SETUP) is JobStage.SETUP
    assert plan_stage(state(S.RENDERING, JobStage.SETUP), JobStage.SETUP) is None
    assert plan_stage(state(S.RENDERING, JobStage.CLEANUP), JobStage.SETUP) is JobStage.SETUP
    with pytest.raises(InvalidTransition):
        plan_stage(state(S.QUEUED), JobStage.SETUP)
    with pytest.raises(BadUserInput):
        check_stage("BAKING")


@pytest.mark.parametrize("target", [S.QUEUED, S.COMPLETED, S.FAILED, S.CANCELLED])
def test_leaving_rendering_clears_the_stage(target: JobStatus) -> None:
    plan = plan_transition(state(S.RENDERING, JobStage.POSTRENDER), target, now=T0, reason="r")
    assert plan.changes["stage"] is None
    claim = plan_transition(state(S.QUEUED), S.RENDERING, now=T0, worker_id="w")
    assert claim.changes["stage"] is None


def test_a_stage_change_is_a_progress_event() -> None:
    assert kind_of_change({"stage": JobStage.SETUP}, S.RENDERING) is JobEventKind.PROGRESS


def test_tags_are_normalised_and_checked() -> None:
    assert parse_tags(" gpu ,fast,,gpu") == ("gpu", "fast")
    assert parse_tags(["a", "b"]) == ("a", "b")
    assert parse_tags(None) == parse_tags("") == ()
    assert format_tags(("a", "b")) == "a,b" and format_tags(()) is None
    assert tags_of("a,b") == ("a", "b") and tags_of(None) == ()
    for wrong in ("a b", "x/y", "a" * 65, 5, ["a", 1], ",".join(str(n) for n in range(16))):
        with pytest.raises(BadUserInput):
            parse_tags(wrong)


def stall_event(worker: str, *, duty: Duty | None = Duty.STALL_RECOVERY) -> JobEvent:
    return JobEvent(
        kind=JobEventKind.STATUS_CHANGED,
        job_id=UID,
        user_id="owner",
        status=S.QUEUED,
        previous_status=S.RENDERING,
        progress=0,
        sequence=9,
        updated_at=T0,
        worker_id=worker,
        duty=duty,
    )


def test_only_the_silent_worker_takes_back_its_requeued_job_and_only_right_after() -> None:
    queued = state(S.QUEUED)
    assert may_reclaim(queued, stall_event("w1"), "w1")
    assert not may_reclaim(queued, stall_event("w1"), "w2")
    assert not may_reclaim(queued, stall_event("w1", duty=None), "w1")  # a hand-back
    assert not may_reclaim(queued, None, "w1")  # something happened since
    assert not may_reclaim(state(S.RENDERING), stall_event("w1"), "w1")


def test_only_an_error_from_a_worker_that_lost_its_job_is_acknowledged() -> None:
    from domain.nexrender_jobs import may_acknowledge_lost_job, parse_report

    error = parse_report({"state": "error", "error": {}})
    finished = parse_report({"state": "finished"})
    assert may_acknowledge_lost_job(error, holds_it=False, held_it=True)
    assert not may_acknowledge_lost_job(error, holds_it=True, held_it=True)  # its own: refused
    assert not may_acknowledge_lost_job(error, holds_it=False, held_it=False)  # never its job
    assert not may_acknowledge_lost_job(finished, holds_it=False, held_it=True)
