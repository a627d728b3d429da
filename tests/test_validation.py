"""Rules of domain/validation.py (and domain/paths.py): submissions, render specs, scalars."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import BadUserInput, FieldError
from domain.lookups import check_search
from domain.users import clean_user_name
from domain.validation import (
    MAX_NEXRENDER_CONFIG_BYTES,
    CleanSubmission,
    JobSubmission,
    check_log_line,
    check_priority,
    check_progress,
    check_reason,
    check_submission,
    parse_allowed_roots,
    render_spec_problems,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FORM_RULE = "must be an absolute path or a file, http, https, s3, gs, ftp or sftp URI"
DATA_ASSET: dict[str, Any] = {
    "type": "data",
    "layerName": "title",
    "property": "Source Text",
    "value": "Summer sale",
}
TEMPLATE: dict[str, Any] = {"src": "file:///mnt/renders/promo.aep", "composition": "main"}
CONFIG: dict[str, Any] = {"template": TEMPLATE, "assets": [DATA_ASSET]}
ROOTS = ("/mnt/renders", "D:\\Renders", "\\\\render-nas\\share")


def clean(**changes: Any) -> CleanSubmission:
    base = CleanSubmission(
        project_name="Promo",
        output_name="promo.mp4",
        template_path="/mnt/renders/promo.aep",
        data_path="/mnt/renders/promo.json",
        output_path="/mnt/renders/promo.mp4",
        priority=5,
        nexrender_config=None,
        auto_cancel_at=None,
    )
    return dataclasses.replace(base, **changes)


def submission(**changes: Any) -> JobSubmission:
    base = JobSubmission(
        project_name="Promo",
        output_name="promo.mp4",
        template_path="/mnt/renders/promo.aep",
        data_path="/mnt/renders/promo.json",
        output_path="/mnt/renders/promo.mp4",
    )
    return dataclasses.replace(base, **changes)


def config(**changes: Any) -> dict[str, Any]:
    return {**CONFIG, **changes}


def refusal(sub: JobSubmission) -> tuple[FieldError, ...]:
    with pytest.raises(BadUserInput) as caught:
        check_submission(sub, now=NOW)
    return caught.value.errors


def assert_one(problems: list[FieldError] | tuple[FieldError, ...], field: str, part: str) -> None:
    assert [problem.field for problem in problems] == [field], problems
    assert part in problems[0].message, problems[0].message


# --- paths: valid -----------------------------------------------------------------------------

VALID_PATHS = [
    ("template_path", "/mnt/renders/promo.aep", "posix"),
    ("template_path", "C:\\jobs\\promo.aep", "windows-backslash"),
    ("template_path", "C:/jobs/promo.aep", "windows-slash"),
    ("template_path", "\\\\nas\\Projets été\\promo final.aep", "unc-spaces-non-ascii"),
    ("template_path", "file:///C:/jobs/promo.aep", "file-uri-windows"),
    ("template_path", "file:///mnt/renders/promo.aep", "file-uri-posix"),
    ("template_path", "http://cdn.example.com/promo.aepx", "http"),
    ("template_path", "https://cdn.example.com/t/promo.aep?sig=abc#top", "https-query-fragment"),
    ("template_path", "s3://bucket/key.aep", "s3"),
    ("template_path", "gs://bucket/templates/promo.aep", "gs"),
    ("template_path", "ftp://ftp.example.com/promo.aep", "ftp"),
    ("template_path", "sftp://user@nas.example.com/promo.aep", "sftp"),
    ("template_path", "HTTPS://cdn.example.com/promo.aep", "upper-case-scheme"),
    ("template_path", "/mnt/renders/PROMO.AEP", "upper-case-extension"),
    ("template_path", "/mnt/renders/promo.AepX", "mixed-case-aepx"),
    ("data_path", "/mnt/renders/data.json", "json"),
    ("data_path", "D:\\data\\rows.CSV", "csv-upper"),
    ("data_path", "https://api.example.com/rows.tsv", "tsv-uri"),
    ("output_path", "/mnt/renders/out/promo.mov", "mov"),
    ("output_path", "C:\\out\\promo.MP4", "mp4-upper"),
    ("output_path", "/mnt/renders/out/shot_[#####].png", "sequence-png"),
    ("output_path", "/mnt/renders/out/frame_[####].exr", "sequence-exr"),
    ("output_path", "file:///mnt/renders/out/shot_[#####].png", "sequence-file-uri"),
    ("output_path", "s3://bucket/out/promo.webm", "s3-output"),
    ("output_path", "/mnt/renders/out/voice.wav", "wav"),
]


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, v, _ in VALID_PATHS], ids=[i for *_, i in VALID_PATHS]
)
def test_valid_paths_have_no_problem(field: str, value: str) -> None:
    assert render_spec_problems(clean(**{field: value})) == []


def test_inline_data_and_worker_output_with_a_data_asset() -> None:
    spec = clean(data_path="inline", output_path="worker", nexrender_config=CONFIG)
    assert render_spec_problems(spec) == []


def test_inline_data_without_a_data_asset_renders_the_template_as_it_is() -> None:
    image = {"type": "image", "src": "file:///mnt/renders/a.png", "layerIndex": 1}
    for nexrender in ({"template": TEMPLATE}, config(assets=[image])):
        spec = clean(data_path="inline", output_path="worker", nexrender_config=nexrender)
        assert render_spec_problems(spec) == []


# --- paths: invalid ---------------------------------------------------------------------------

INVALID_PATHS = [
    ("template_path", "jobs/promo.aep", FORM_RULE, "relative"),
    ("template_path", "promo.aep", "relative path", "bare-name"),
    ("template_path", "C:promo.aep", FORM_RULE, "drive-relative"),
    ("template_path", ".\\promo.aep", FORM_RULE, "dot-backslash"),
    ("template_path", "\\jobs\\promo.aep", FORM_RULE, "rooted-without-drive"),
    ("template_path", "\\\\nas", "UNC path needs a server and a share", "unc-without-share"),
    ("template_path", "", "must not be empty", "empty"),
    ("template_path", "/mnt/renders/../etc/promo.aep", "'..'", "posix-traversal"),
    ("template_path", "C:\\jobs\\..\\promo.aep", "'..'", "windows-traversal"),
    ("template_path", "\\\\nas\\share\\..\\promo.aep", "'..'", "unc-traversal"),
    ("template_path", "https://cdn.example.com/a/../promo.aep", "'..'", "uri-traversal"),
    ("template_path", "https://cdn.example.com/a/%2e%2e/promo.aep", "'..'", "percent-encoded"),
    ("template_path", "/mnt/renders/%2E%2E/promo.aep", "'..'", "percent-encoded-upper"),
    ("template_path", "s3://bucket/%252e%252e/promo.aep", "'..'", "double-encoded"),
    ("template_path", "file:///mnt/renders/../promo.aep", "'..'", "file-uri-traversal"),
    ("template_path", "/mnt/renders/pro\nmo.aep", "control characters", "newline"),
    ("template_path", "/mnt/renders/pro\tmo.aep", "control characters", "tab"),
    ("template_path", "/mnt/renders/\x1b[31mpromo.aep", "control characters", "escape"),
    ("template_path", "/mnt/renders/promo\x7f.aep", "control characters", "delete"),
    ("template_path", "/mnt/renders/promo\x00.aep", "control characters", "nul"),
    ("template_path", "/" + "a" * 1020 + ".aep", "at most 1024 characters", "1025-chars"),
    ("template_path", "javascript:alert(1)//.aep", "scheme 'javascript'", "javascript"),
    ("template_path", "smb://nas/share/promo.aep", FORM_RULE, "smb"),
    ("template_path", "data:text/plain,promo.aep", "scheme 'data'", "data-uri"),
    ("template_path", "https:///promo.aep", "must name a host", "https-no-host"),
    ("template_path", "s3:///key.aep", "host (or bucket) after 's3://'", "s3-no-bucket"),
    ("template_path", "http:promo.aep", "must name a host", "http-no-slashes"),
    ("template_path", "file:promo.aep", "file URI needs an absolute path", "file-uri-relative"),
    ("template_path", "/mnt/renders/promo.mp4", "must end in .aep or .aepx", "template-ext"),
    ("template_path", "/mnt/renders/.aep", "must end in .aep or .aepx", "extension-only"),
    ("template_path", "/mnt/renders/", "must end in .aep or .aepx", "directory"),
    ("template_path", "https://h/promo.aep.exe?x=.aep", "must end in .aep", "ext-on-uri-path"),
    ("data_path", "/mnt/renders/data.xml", "must end in .json, .csv or .tsv", "data-ext"),
    ("output_path", "/mnt/renders/promo.aep", "must end in .mp4, .mov", "output-ext"),
    ("output_path", "/mnt/renders/shot_[##].mp4", "frame pattern", "pattern-on-movie"),
    ("output_path", "/mnt/renders/s_[##]_[##].png", "at most one frame pattern", "two-patterns"),
]


@pytest.mark.parametrize(
    ("field", "value", "part"),
    [case[:3] for case in INVALID_PATHS],
    ids=[case[3] for case in INVALID_PATHS],
)
def test_invalid_paths_name_the_field_and_the_rule(field: str, value: str, part: str) -> None:
    assert_one(render_spec_problems(clean(**{field: value})), field, part)


INLINE_AND_WORKER = [
    ("data_path", "inline", None, "may be 'inline' only when nexrender_config", "no-config"),
    ("output_path", "worker", None, "may be 'worker' only when nexrender_config", "worker"),
]


@pytest.mark.parametrize(
    ("field", "value", "nexrender", "part"),
    [case[:4] for case in INLINE_AND_WORKER],
    ids=[case[4] for case in INLINE_AND_WORKER],
)
def test_inline_and_worker_need_a_config(
    field: str, value: str, nexrender: dict[str, Any] | None, part: str
) -> None:
    spec = clean(nexrender_config=nexrender, **{field: value})
    assert_one(render_spec_problems(spec), field, part)


def test_every_path_problem_is_listed_in_field_order() -> None:
    spec = clean(template_path="promo.aep", data_path="/d/x.xml", output_path="smb://n/o.mp4")
    problems = render_spec_problems(spec)
    assert [p.field for p in problems] == ["template_path", "data_path", "output_path"]


def test_a_path_can_fail_extension_and_roots_together() -> None:
    problems = render_spec_problems(clean(output_path="/tmp/x.txt"), allowed_roots=ROOTS)
    assert [p.field for p in problems] == ["output_path", "output_path"]
    assert "must end in" in problems[0].message
    assert "allowed roots" in problems[1].message


# --- allowed roots ----------------------------------------------------------------------------

ROOT_CASES = [
    ("/mnt/renders/promo.aep", True, "inside"),
    ("/mnt/renders/deep/er/promo.aep", True, "deeper"),
    ("/mnt/renders/./promo.aep", True, "dot-segment"),
    ("/mnt/renders//promo.aep", True, "double-slash"),
    ("/mnt/other/promo.aep", False, "outside"),
    ("/mnt/renders-evil/promo.aep", False, "prefix-not-boundary"),
    ("/MNT/renders/promo.aep", False, "posix-is-case-sensitive"),
    ("d:\\renders\\promo.aep", True, "windows-case-insensitive"),
    ("D:/RENDERS/jobs/promo.aep", True, "windows-slash-equivalence"),
    ("D:\\Renders2\\promo.aep", False, "windows-prefix-not-boundary"),
    ("C:\\Renders\\promo.aep", False, "other-drive"),
    ("\\\\RENDER-NAS\\Share\\promo.aep", True, "unc-inside"),
    ("\\\\render-nas\\other\\promo.aep", False, "unc-other-share"),
    ("https://cdn.example.com/promo.aep", True, "http-uri-not-subject"),
    ("s3://bucket/promo.aep", True, "s3-uri-not-subject"),
    ("file:///mnt/renders/promo.aep", True, "file-uri-inside"),
    ("file:///mnt/elsewhere/promo.aep", False, "file-uri-outside"),
    ("file:///D:/Renders/promo.aep", True, "file-uri-windows-inside"),
    ("file://render-nas/share/promo.aep", True, "file-uri-unc-inside"),
]


@pytest.mark.parametrize(
    ("path", "inside"), [case[:2] for case in ROOT_CASES], ids=[case[2] for case in ROOT_CASES]
)
def test_allowed_roots(path: str, inside: bool) -> None:
    problems = render_spec_problems(clean(template_path=path), allowed_roots=ROOTS)
    if inside:
        assert problems == []
    else:
        assert_one(problems, "template_path", "must lie inside one of the allowed roots: /mnt/")


@pytest.mark.parametrize(
    ("root", "path"),
    [
        ("/mnt/renders/promo.aep", "/mnt/renders/promo.aep"),
        ("C:\\Jobs\\promo.aep", "c:/jobs/PROMO.aep"),
        ("/mnt/renders/", "/mnt/renders/promo.aep"),
        ("D:\\", "d:/promo.aep"),
        ("/", "/promo.aep"),
    ],
    ids=["equal", "equal-windows", "root-with-trailing-slash", "drive-root", "posix-root"],
)
def test_equal_to_or_below_a_root_counts_as_inside(root: str, path: str) -> None:
    problems = render_spec_problems(clean(template_path=path), allowed_roots=(root,))
    assert [p for p in problems if p.field == "template_path"] == []


def test_no_roots_means_no_root_rule() -> None:
    assert render_spec_problems(clean(template_path="/anywhere/promo.aep")) == []


def test_roots_message_lists_every_root() -> None:
    problems = render_spec_problems(clean(template_path="/x/p.aep"), allowed_roots=ROOTS)
    assert problems[0].message.endswith("/mnt/renders, D:\\Renders, \\\\render-nas\\share")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ("", ()),
        ("  ;  ; \n", ()),
        ("/mnt/renders", ("/mnt/renders",)),
        (" /mnt/renders ; D:\\Renders ", ("/mnt/renders", "D:\\Renders")),
        ("/mnt/a\n\\\\nas\\share\r\nE:/x", ("/mnt/a", "\\\\nas\\share", "E:/x")),
        ("/mnt/renders, final", ("/mnt/renders, final",)),
    ],
    ids=["none", "empty", "blanks", "one", "semicolons-trimmed", "newlines", "comma-is-a-char"],
)
def test_parse_allowed_roots(raw: str | None, expected: tuple[str, ...]) -> None:
    assert parse_allowed_roots(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["renders", "/mnt/ok;relative/root", "C:renders", "file:///mnt/renders", "/mnt/../etc"],
    ids=["relative", "one-relative-among-many", "drive-relative", "uri", "traversal"],
)
def test_parse_allowed_roots_refuses_a_bad_root_naming_it(raw: str) -> None:
    bad = raw.split(";")[-1]
    with pytest.raises(ValueError, match="RENDERTRACK_ALLOWED_ROOTS") as caught:
        parse_allowed_roots(raw)
    assert repr(bad) in str(caught.value)


# --- names ------------------------------------------------------------------------------------


def test_names_are_trimmed() -> None:
    result = check_submission(
        submission(project_name="  Promo été \n", output_name="\tpromo.mp4 "), now=NOW
    )
    assert (result.project_name, result.output_name) == ("Promo été", "promo.mp4")


NAME_CASES = [
    ("project_name", "   ", "must not be empty", "blank"),
    ("project_name", "", "must not be empty", "empty"),
    ("project_name", None, "is required", "none"),
    ("project_name", 42, "must be a string", "int"),
    ("project_name", "a" * 256, "at most 255 characters", "256-chars"),
    ("project_name", "pro\nmo", "control characters", "newline"),
    ("project_name", "pro\tmo", "control characters", "tab"),
    ("project_name", "pro\x1bmo", "control characters", "escape"),
    ("project_name", "pro\x7fmo", "control characters", "delete"),
    ("project_name", "pro\x00mo", "must not contain a NUL byte", "nul"),
    ("project_name", "pro\ud800mo", "unpaired surrogates", "lone-surrogate"),
    ("output_name", "out/promo.mp4", "without '/' or '\\'", "slash"),
    ("output_name", "out\\promo.mp4", "without '/' or '\\'", "backslash"),
    ("output_name", "..", "not '.' or '..'", "dot-dot"),
    ("output_name", " . ", "not '.' or '..'", "dot"),
]


@pytest.mark.parametrize(
    ("field", "value", "part"), [c[:3] for c in NAME_CASES], ids=[c[3] for c in NAME_CASES]
)
def test_bad_names(field: str, value: object, part: str) -> None:
    assert_one(refusal(submission(**{field: value})), field, part)


def test_name_of_255_characters_is_accepted() -> None:
    assert check_submission(submission(project_name="a" * 255), now=NOW).project_name == "a" * 255


@pytest.mark.parametrize(
    ("field", "value", "part"),
    [
        ("template_path", None, "is required"),
        ("data_path", 12, "must be a string"),
        ("output_path", "/mnt/x\x00.mp4", "NUL byte"),
    ],
    ids=["template-none", "data-int", "output-nul"],
)
def test_submission_paths_are_only_type_and_nul_checked(
    field: str, value: object, part: str
) -> None:
    assert_one(refusal(submission(**{field: value})), field, part)


def test_submission_keeps_path_content_rules_for_validating() -> None:
    result = check_submission(submission(template_path="relative.txt"), now=NOW)
    assert result.template_path == "relative.txt"


# --- priority, progress, auto_cancel_at ------------------------------------------------------


@pytest.mark.parametrize("value", [0, 11, -1, True, False, "5", 5.0, None], ids=repr)
def test_bad_priority(value: object) -> None:
    with pytest.raises(BadUserInput) as caught:
        check_priority(value)
    assert caught.value.errors[0].field == "priority"
    assert_one(refusal(submission(priority=value)), "priority", "")


@pytest.mark.parametrize("value", [1, 5, 10], ids=repr)
def test_good_priority(value: int) -> None:
    assert check_priority(value) == value
    assert check_submission(submission(priority=value), now=NOW).priority == value


def test_priority_defaults_to_5_and_message_names_the_range() -> None:
    assert check_submission(submission(), now=NOW).priority == 5
    assert_one(refusal(submission(priority=11)), "priority", "must be an integer from 1 to 10")


@pytest.mark.parametrize("value", [-1, 101, True, 50.0, "50", None], ids=repr)
def test_bad_progress(value: object) -> None:
    with pytest.raises(BadUserInput) as caught:
        check_progress(value, "renderProgress")
    assert_one(caught.value.errors, "renderProgress", "")


@pytest.mark.parametrize("value", [0, 42, 100], ids=repr)
def test_good_progress(value: int) -> None:
    assert check_progress(value) == value


AUTO_CANCEL_CASES = [
    (NOW - timedelta(seconds=1), "must be in the future", "past"),
    (NOW, "must be in the future", "equal-to-now"),
    (datetime(2030, 1, 1, 12, 0), "must include a timezone", "naive"),
    ("2030-01-01T00:00:00Z", "with a timezone", "string"),
]


@pytest.mark.parametrize(
    ("value", "part"), [c[:2] for c in AUTO_CANCEL_CASES], ids=[c[2] for c in AUTO_CANCEL_CASES]
)
def test_bad_auto_cancel_at(value: object, part: str) -> None:
    assert_one(refusal(submission(auto_cancel_at=value)), "auto_cancel_at", part)


def test_future_auto_cancel_at_in_any_timezone_is_kept() -> None:
    later = (NOW + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-5)))
    assert check_submission(submission(auto_cancel_at=later), now=NOW).auto_cancel_at == later
    assert check_submission(submission(), now=NOW).auto_cancel_at is None


# --- reasons and log lines ---------------------------------------------------------------------


def test_reason_is_trimmed() -> None:
    assert check_reason("  out of disk \n", "error_message") == "out of disk"
    assert check_reason("x" * 4096, "cancelled_reason") == "x" * 4096


@pytest.mark.parametrize(
    ("value", "part"),
    [
        (None, "is required"),
        (3, "must be a string"),
        ("  \n", "must not be empty"),
        ("x" * 4097, "at most 4096 characters"),
        ("bad\x00", "NUL byte"),
    ],
    ids=["none", "int", "blank", "4097-chars", "nul"],
)
def test_bad_reason(value: object, part: str) -> None:
    with pytest.raises(BadUserInput) as caught:
        check_reason(value, "cancelled_reason")
    assert_one(caught.value.errors, "cancelled_reason", part)


def test_log_line_keeps_indentation_and_drops_trailing_newline() -> None:
    assert check_log_line("  at render (x.js:1)\n") == "  at render (x.js:1)"
    assert check_log_line("\x1b[32mok\x1b[0m") == "\x1b[32mok\x1b[0m"


@pytest.mark.parametrize(
    ("value", "part"),
    [
        ("", "must not be empty"),
        (" \t\n", "must not be empty"),
        ("x" * 4097, "at most 4096 characters"),
        ("a\x00b", "NUL byte"),
        (b"bytes", "must be a string"),
    ],
    ids=["empty", "blank", "4097-chars", "nul", "bytes"],
)
def test_bad_log_line(value: object, part: str) -> None:
    with pytest.raises(BadUserInput) as caught:
        check_log_line(value)
    assert_one(caught.value.errors, "log", part)


# --- nexrender_config: shape (check_submission) ------------------------------------------------


def test_config_is_returned_as_a_plain_json_copy() -> None:
    sent = config(extra=("a", 1))
    result = check_submission(submission(nexrender_config=sent), now=NOW).nexrender_config
    assert result == {**CONFIG, "extra": ["a", 1]}


def test_config_of_exactly_the_limit_is_accepted_and_one_byte_more_refused() -> None:
    base = {"template": TEMPLATE, "pad": ""}
    room = MAX_NEXRENDER_CONFIG_BYTES - len(json.dumps(base, separators=(",", ":")).encode())
    fitting = {"template": TEMPLATE, "pad": "é" * (room // 2) + "x" * (room % 2)}
    assert check_submission(submission(nexrender_config=fitting), now=NOW).nexrender_config
    too_big = {"template": TEMPLATE, "pad": fitting["pad"] + "x"}
    assert_one(refusal(submission(nexrender_config=too_big)), "nexrender_config", "256 KiB")


SHAPE_CASES = [
    (["template"], "nexrender_config", "must be a JSON object", "list"),
    ('{"template": {}}', "nexrender_config", "must be a JSON object", "json-text"),
    ({"template": TEMPLATE, "when": NOW}, "nexrender_config", "must be JSON", "datetime-value"),
    ({"n": float("nan")}, "nexrender_config", "NaN", "nan"),
    ({"n": {1, 2}}, "nexrender_config", "must be JSON", "set-value"),
    ({"assets": [{"k": "v\x00"}]}, "nexrender_config.assets[0].k", "NUL byte", "nul-in-value"),
    ({"assets": [{"a\x00b": "v"}]}, "nexrender_config.assets[0].a\\x00b", "NUL", "nul-in-key"),
    ({"a": {"b": ["ok", "x\ud800"]}}, "nexrender_config.a.b[1]", "surrogates", "surrogate"),
    ({"a": {3: "x"}}, "nexrender_config.a.3", "keys must be strings", "int-key"),
]


@pytest.mark.parametrize(
    ("value", "field", "part"), [c[:3] for c in SHAPE_CASES], ids=[c[3] for c in SHAPE_CASES]
)
def test_bad_config_shape(value: object, field: str, part: str) -> None:
    assert_one(refusal(submission(nexrender_config=value)), field, part)


def test_every_nul_in_config_is_reported_at_its_path() -> None:
    value = {"template": {"src": "a\x00", "composition": "main"}, "tags": ["x", "y\x00"]}
    errors = refusal(submission(nexrender_config=value))
    assert [e.field for e in errors] == [
        "nexrender_config.template.src",
        "nexrender_config.tags[1]",
    ]


def test_self_containing_config_is_refused_not_crashing() -> None:
    value: dict[str, Any] = {"template": TEMPLATE}
    value["self"] = value
    assert_one(refusal(submission(nexrender_config=value)), "nexrender_config", "must be JSON")


def test_submission_collects_every_error_at_once() -> None:
    errors = refusal(
        submission(project_name="  ", priority=0, nexrender_config="nope", template_path=None)
    )
    assert [e.field for e in errors] == [
        "project_name",
        "template_path",
        "priority",
        "nexrender_config",
    ]


def test_three_bad_fields_make_three_errors_in_one_refusal() -> None:
    errors = refusal(submission(output_name="a/b", priority=True, auto_cancel_at=NOW))
    assert len(errors) == 3


# --- nexrender_config: Nexrender structure (render_spec_problems) -----------------------------

IMAGE = {"type": "image", "src": "https://cdn.example.com/logo.png", "layerName": "logo"}
STRUCTURE_CASES: list[tuple[dict[str, Any], str, str, str]] = [
    ({"assets": [DATA_ASSET]}, "nexrender_config.template", "is required", "missing-template"),
    ({"template": "promo.aep"}, "nexrender_config.template", "must be an object", "template-str"),
    (
        {"template": {"src": "file:///mnt/renders/promo.aep"}},
        "nexrender_config.template.composition",
        "is required",
        "no-composition",
    ),
    (
        {"template": {**TEMPLATE, "src": " "}},
        "nexrender_config.template.src",
        "must not be empty",
        "blank-src",
    ),
    (
        {"template": {**TEMPLATE, "frameStart": "10"}},
        "nexrender_config.template.frameStart",
        "must be an integer",
        "frame-start-str",
    ),
    (
        {"template": {**TEMPLATE, "incrementFrame": True}},
        "nexrender_config.template.incrementFrame",
        "must be an integer",
        "increment-bool",
    ),
    (
        {"template": {**TEMPLATE, "outputExt": 4}},
        "nexrender_config.template.outputExt",
        "must be a string",
        "output-ext-int",
    ),
    (config(assets={"type": "data"}), "nexrender_config.assets", "must be a list", "assets-dict"),
    (config(assets=["logo.png"]), "nexrender_config.assets[0]", "must be an object", "asset-str"),
    (
        config(assets=[IMAGE, {"type": "font", "src": "x"}]),
        "nexrender_config.assets[1].type",
        "must be one of image, audio, video, data, script, static",
        "unknown-type",
    ),
    (config(assets=[{"src": "x"}]), "nexrender_config.assets[0].type", "must be one", "no-type"),
    (
        config(assets=[{"type": "image", "src": "https://cdn.example.com/logo.png"}]),
        "nexrender_config.assets[0].layerName",
        "is required unless layerIndex is given",
        "image-without-layer",
    ),
    (
        config(assets=[{**IMAGE, "layerName": None, "layerIndex": 2}]),
        "nexrender_config.assets[0].layerName",
        "must be a string",
        "layer-name-null",
    ),
    (
        config(assets=[{"type": "audio", "src": "s3://b/a.wav", "layerIndex": "2"}]),
        "nexrender_config.assets[0].layerIndex",
        "must be an integer",
        "layer-index-str",
    ),
    (
        config(assets=[{"type": "video", "layerIndex": 1}]),
        "nexrender_config.assets[0].src",
        "is required",
        "video-without-src",
    ),
    (
        config(assets=[{k: v for k, v in DATA_ASSET.items() if k != "property"}]),
        "nexrender_config.assets[0].property",
        "is required",
        "data-without-property",
    ),
    (
        config(assets=[{k: v for k, v in DATA_ASSET.items() if k != "value"}]),
        "nexrender_config.assets[0].value",
        "is required unless expression is given",
        "data-without-value",
    ),
    (
        config(assets=[{**DATA_ASSET, "expression": 3}]),
        "nexrender_config.assets[0].expression",
        "must be a string",
        "expression-int",
    ),
    (
        config(assets=[{"type": "script"}]),
        "nexrender_config.assets[0].src",
        "is required",
        "script-without-src",
    ),
    (
        config(actions={"postrender": [{"module": "@nexrender/action-copy"}, {"output": "x"}]}),
        "nexrender_config.actions.postrender[1].module",
        "is required",
        "action-without-module",
    ),
    (
        config(actions={"prerender": [{"module": ""}]}),
        "nexrender_config.actions.prerender[0].module",
        "must not be empty",
        "action-empty-module",
    ),
    (
        config(actions=[{"module": "x"}]),
        "nexrender_config.actions",
        "must be an object",
        "actions-list",
    ),
    (
        config(actions={"postrender": {"module": "x"}}),
        "nexrender_config.actions.postrender",
        "must be a list",
        "stage-object",
    ),
    (
        config(actions={"postRender": []}),
        "nexrender_config.actions.postRender",
        "is not an action stage",
        "unknown-stage",
    ),
]


@pytest.mark.parametrize(
    ("nexrender", "field", "part"),
    [c[:3] for c in STRUCTURE_CASES],
    ids=[c[3] for c in STRUCTURE_CASES],
)
def test_bad_nexrender_structure(nexrender: dict[str, Any], field: str, part: str) -> None:
    assert_one(render_spec_problems(clean(nexrender_config=nexrender)), field, part)


def test_full_nexrender_job_with_unknown_keys_is_accepted() -> None:
    nexrender = {
        "uid": "abc",
        "tags": "fast,gpu",
        "myPlugin": {"anything": [1, 2, 3]},
        "template": {
            **TEMPLATE,
            "frameStart": 0,
            "frameEnd": 250,
            "frameIncrement": 1,
            "outputModule": "H.264",
            "outputExt": "mp4",
            "settingsTemplate": "Best Settings",
            "continueOnMissing": True,
            "customKey": None,
        },
        "assets": [
            {**IMAGE, "extra": True},
            {"type": "audio", "src": "s3://bucket/a.wav", "layerIndex": 3},
            {"type": "data", "layerIndex": 2, "property": "Position", "expression": "[0, 0]"},
            {**DATA_ASSET, "value": None},
            {"type": "script", "src": "file:///mnt/renders/s.jsx", "keyword": "NX"},
            {"type": "static", "src": "https://cdn.example.com/font.otf"},
        ],
        "actions": {
            "predownload": [],
            "postrender": [{"module": "@nexrender/action-encode", "preset": "mp4"}],
        },
    }
    assert render_spec_problems(clean(nexrender_config=nexrender)) == []


def test_every_structure_problem_is_listed() -> None:
    nexrender = {
        "template": {},
        "assets": [{"type": "image"}],
        "actions": {"prerender": [{}]},
    }
    fields = [p.field for p in render_spec_problems(clean(nexrender_config=nexrender))]
    assert fields == [
        "nexrender_config.template.src",
        "nexrender_config.template.composition",
        "nexrender_config.assets[0].src",
        "nexrender_config.assets[0].layerName",
        "nexrender_config.actions.prerender[0].module",
    ]


# --- never crashes ------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ANY_VALUE = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | JSON_VALUES
)
PATH_TEXT = st.text() | st.sampled_from(["inline", "worker", "file:///", "C:", "\\\\"]).flatmap(
    lambda prefix: st.text().map(lambda rest: prefix + rest)
)


@settings(max_examples=300, deadline=None)
@given(
    template=PATH_TEXT,
    data=PATH_TEXT,
    output=PATH_TEXT,
    nexrender=st.none() | st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5),
    roots=st.lists(st.text(max_size=20), max_size=3),
)
def test_render_spec_problems_never_raise(
    template: str, data: str, output: str, nexrender: dict[str, Any] | None, roots: list[str]
) -> None:
    spec = clean(
        template_path=template, data_path=data, output_path=output, nexrender_config=nexrender
    )
    problems = render_spec_problems(spec, allowed_roots=roots)
    assert isinstance(problems, list)
    assert all(isinstance(p, FieldError) for p in problems)


@settings(max_examples=300, deadline=None)
@given(
    name=ANY_VALUE,
    output=ANY_VALUE,
    path=ANY_VALUE,
    priority=ANY_VALUE,
    nexrender=ANY_VALUE,
    cancel=ANY_VALUE,
)
def test_check_submission_returns_or_refuses_only(
    name: object, output: object, path: object, priority: object, nexrender: object, cancel: object
) -> None:
    sent = JobSubmission(name, output, path, path, path, priority, nexrender, cancel)
    errors: tuple[FieldError, ...] = ()
    try:
        result = check_submission(sent, now=NOW)
    except BadUserInput as refused:
        errors = refused.errors
    else:
        assert isinstance(result, CleanSubmission)
        assert isinstance(render_spec_problems(result), list)
    assert all("\x00" not in str(error) for error in errors)


@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f", "\x85", "\x9b"])
def test_one_rule_for_control_characters_in_names_searches_and_user_names(control: str) -> None:
    """C0, DEL and C1 controls alike, wherever a name is checked (one definition)."""
    for check, field in ((check_search, "search"), (clean_user_name, "name")):
        with pytest.raises(BadUserInput) as refused:
            check(f"promo{control}2026")
        assert [error.field for error in refused.value.errors] == [field]


def test_an_id_longer_than_the_id_columns_is_no_id() -> None:
    from domain.lookups import ID_LENGTH, is_well_formed_id

    assert is_well_formed_id("a" * ID_LENGTH)
    assert not is_well_formed_id("0" * (ID_LENGTH + 1))
