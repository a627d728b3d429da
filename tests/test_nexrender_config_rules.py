"""What a nexrender_config may reach on a render node: its paths under the allowed roots, its
URIs by scheme, its action modules from an allow-list (domain/nexrender.py, domain/paths.py),
each refusal at the JSON path of its value and in the order of the JSON; the settings that tune
it; and submissions that break it ending FAILED."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.settings import ENVIRONMENT_HELP, Settings
from domain.errors import FieldError
from domain.nexrender import UPLOAD_PROVIDERS
from domain.policy import Actor
from domain.status import JobStatus
from domain.validation import (
    OFFICIAL_ACTIONS,
    URI_SCHEMES,
    CleanSubmission,
    JobSubmission,
    parse_allowed_actions,
    parse_uri_schemes,
    render_spec_problems,
)
from models import Job
from service import jobs, settings

ROOTS = ("/mnt/renders", "D:\\Renders", "\\\\render-nas\\share")
CONFIG = "nexrender_config"
TEMPLATE: dict[str, Any] = {"src": "file:///mnt/renders/promo.aep", "composition": "main"}
ROOTS_RULE = "must lie inside one of the allowed roots: /mnt/renders, D:\\Renders"
TRAVERSAL = "must not contain a '..' segment"
MODULE_RULE = "must be one of the allowed action modules"
PATH_HINT = "(a path to a script is not one)"

# The example of Nexrender's own README: encode inside the job's folder, then copy out.
NEXRENDER_README_JOB: dict[str, Any] = {
    "template": {"src": "file:///D:/Renders/project.aep", "composition": "main"},
    "assets": [
        {"src": "https://example.com/assets/image.jpg", "type": "image", "layerName": "bg.jpg"},
        {"src": "https://example.com/assets/jpeg.jpg", "type": "image", "layerIndex": 15},
        {"src": "file:///D:/Renders/audio.mp3", "type": "audio", "layerIndex": 15},
        {"type": "data", "layerName": "title", "property": "Source Text", "value": "Hello"},
    ],
    "actions": {
        "postrender": [
            {"module": "@nexrender/action-encode", "preset": "mp4", "output": "encoded.mp4"},
            {
                "module": "@nexrender/action-copy",
                "input": "encoded.mp4",
                "output": "d:/renders/results/myresult.mp4",
            },
        ]
    },
}


def spec(config: dict[str, Any] | None) -> CleanSubmission:
    return CleanSubmission(
        project_name="Promo",
        output_name="promo.mp4",
        template_path="/mnt/renders/promo.aep",
        data_path="/mnt/renders/promo.json",
        output_path="/mnt/renders/promo.mp4",
        priority=5,
        nexrender_config=config,
        auto_cancel_at=None,
    )


def problems(
    config: dict[str, Any],
    *,
    roots: tuple[str, ...] = ROOTS,
    schemes: tuple[str, ...] = URI_SCHEMES,
    actions: tuple[str, ...] = (),
) -> list[FieldError]:
    return render_spec_problems(
        spec(config), allowed_roots=roots, allowed_uri_schemes=schemes, allowed_actions=actions
    )


def with_src(src: str) -> dict[str, Any]:
    return {"template": {**TEMPLATE, "src": src}}


def with_asset(asset: dict[str, Any]) -> dict[str, Any]:
    return {"template": TEMPLATE, "assets": [asset]}


def with_action(action: dict[str, Any], stage: str = "postrender") -> dict[str, Any]:
    return {"template": TEMPLATE, "actions": {stage: [action]}}


def copy_to(output: object, **options: object) -> dict[str, Any]:
    return with_action({"module": "@nexrender/action-copy", "output": output, **options})


def assert_one(found: list[FieldError], field: str, part: str) -> None:
    assert [problem.field for problem in found] == [field], found
    assert part in found[0].message, found[0].message


# --- paths in the config, under the allowed roots -------------------------------------------

ALLOWED_CONFIGS = [
    (with_src("/mnt/renders/promo.aep"), "template-posix"),
    (with_src("file:///mnt/renders/deep/promo.aep"), "template-file-uri"),
    (with_src("file://localhost/mnt/renders/promo.aep"), "template-file-uri-localhost"),
    (with_src("file:///mnt/%72enders/promo.aep"), "template-file-uri-percent-encoded-inside"),
    (with_src("d:\\renders\\promo.aep"), "template-windows-case-insensitive"),
    (with_src("file:///D:/Renders/promo.aep"), "template-file-uri-windows"),
    (with_src("file://render-nas/share/promo.aep"), "template-file-uri-unc"),
    (with_src("\\\\render-nas\\share\\promo.aep"), "template-unc"),
    (with_src("https://cdn.example.com/promo.aep"), "template-https"),
    (with_src("HTTPS://cdn.example.com/promo.aep"), "template-https-upper-case"),
    (with_src("s3://bucket/templates/promo.zip"), "template-s3-zip"),
    (with_asset({"type": "image", "src": "/mnt/renders/a.png", "layerName": "a"}), "asset"),
    (
        with_asset({"type": "static", "src": "sftp://nas.example.com/f.ttf", "name": "f.ttf"}),
        "asset-sftp-named",
    ),
    (copy_to("/mnt/renders/out/promo.mp4"), "action-output-inside"),
    (copy_to("D:/Renders/out/promo.mp4", input="result.mov"), "action-relative-input"),
    (copy_to("out/promo.mp4"), "action-relative-output-in-job-folder"),
    (
        with_action({"module": "@nexrender/action-compress", "format": "zip", "input": ["a", "b"]}),
        "action-input-list",
    ),
    (
        with_action(
            {"module": "@nexrender/action-cache", "cacheDirectory": "/mnt/renders/cache"},
            "predownload",
        ),
        "cache-directory-inside",
    ),
    (copy_to("/mnt/renders/x.mp4", logPath="/mnt/renders/log.txt"), "path-option-inside"),
    (
        with_action(
            {
                "module": "@nexrender/action-encode",
                "output": "out.mp4",
                "params": {"-i": ["voice.wav", "/mnt/renders/music.wav"], "-vcodec": "x"},
            }
        ),
        "encode-extra-inputs",
    ),
    (copy_to("/mnt/renders/x.mp4", description="a plain note"), "other-options-untouched"),
    ({"template": TEMPLATE, "output": "/mnt/renders/result.mov"}, "job-output-inside"),
    ({"template": TEMPLATE, "uid": "job-42"}, "uid"),
    (NEXRENDER_README_JOB, "nexrender-readme-example"),
]


@pytest.mark.parametrize(
    "config", [c for c, _ in ALLOWED_CONFIGS], ids=[i for _, i in ALLOWED_CONFIGS]
)
def test_paths_inside_the_roots_and_remote_uris_are_accepted(config: dict[str, Any]) -> None:
    assert problems(config) == []


REFUSED_PATHS = [
    # Options of any name, however nested, that name a place or climb out (an outside probe
    # found these passing): ffmpeg's arguments, a fonts folder, nested options.
    (
        with_action(
            {"module": "@nexrender/action-encode", "output": "o.mp4", "params": {"-y": "/etc/x"}}
        ),
        "actions.postrender[0].params.-y",
        ROOTS_RULE,
        "encode-params-outside",
    ),
    (
        with_action({"module": "@nexrender/action-fonts", "fontsDir": "/etc"}),
        "actions.postrender[0].fontsDir",
        ROOTS_RULE,
        "fonts-dir-outside",
    ),
    (
        copy_to("/mnt/renders/x.mp4", options={"target": "file:///etc/cron.d/x"}),
        "actions.postrender[0].options.target",
        ROOTS_RULE,
        "nested-option-outside",
    ),
    (
        copy_to("/mnt/renders/x.mp4", note="reports/../../x"),
        "actions.postrender[0].note",
        "'..'",
        "option-climbing-out",
    ),
    (with_src("/etc/promo.aep"), "template.src", ROOTS_RULE, "template-outside"),
    (with_src("/mnt/renders-evil/p.aep"), "template.src", ROOTS_RULE, "template-prefix-only"),
    (with_src("file:///etc/passwd"), "template.src", ROOTS_RULE, "template-file-uri-outside"),
    (
        with_src("file:///C:/Windows/promo.aep"),
        "template.src",
        ROOTS_RULE,
        "template-file-uri-other-drive",
    ),
    (
        with_src("file://evil-host/share/p.aep"),
        "template.src",
        ROOTS_RULE,
        "template-file-uri-other-server",
    ),
    (with_src("/mnt/renders/../etc/p.aep"), "template.src", TRAVERSAL, "template-traversal"),
    (
        with_src("file:///mnt/renders/%2e%2e/etc/p.aep"),
        "template.src",
        TRAVERSAL,
        "template-file-uri-percent-encoded-traversal",
    ),
    (
        with_src("file:///mnt/renders/%252E%252E/p.aep"),
        "template.src",
        TRAVERSAL,
        "template-double-encoded-traversal",
    ),
    (
        with_src("https://cdn.example.com/a/%2e%2e/p.aep"),
        "template.src",
        TRAVERSAL,
        "template-remote-traversal",
    ),
    (with_src("promo.aep"), "template.src", "a relative path is not accepted", "template-relative"),
    (with_src("C:promo.aep"), "template.src", "drive letter", "template-drive-relative"),
    (
        with_asset({"type": "image", "src": "/etc/shadow.png", "layerName": "a"}),
        "assets[0].src",
        ROOTS_RULE,
        "asset-outside",
    ),
    (
        with_asset({"type": "script", "src": "file:///tmp/evil.jsx"}),
        "assets[0].src",
        ROOTS_RULE,
        "script-asset-outside",
    ),
    (copy_to("/etc/cron.d/job"), "actions.postrender[0].output", ROOTS_RULE, "output-outside"),
    (copy_to("file:///etc/x"), "actions.postrender[0].output", ROOTS_RULE, "output-file-uri"),
    (copy_to("../../x.mp4"), "actions.postrender[0].output", TRAVERSAL, "relative-traversal"),
    (copy_to("a\\..\\..\\x.mp4"), "actions.postrender[0].output", TRAVERSAL, "relative-backslash"),
    (copy_to("%2e%2e/x.mp4"), "actions.postrender[0].output", TRAVERSAL, "relative-encoded"),
    (copy_to("\\x.mp4"), "actions.postrender[0].output", "needs a drive letter", "rooted-no-drive"),
    (copy_to(""), "actions.postrender[0].output", "must not be empty", "output-empty"),
    (
        copy_to("/mnt/renders/x.mp4", input="/home/me/.ssh/id_rsa"),
        "actions.postrender[0].input",
        ROOTS_RULE,
        "input-outside",
    ),
    (
        copy_to("/mnt/renders/x.mp4", outputPath="/var/www/x"),
        "actions.postrender[0].outputPath",
        ROOTS_RULE,
        "path-option-camel",
    ),
    (
        copy_to("/mnt/renders/x.mp4", logpath="~/x.log"),
        "actions.postrender[0].logpath",
        "a relative path is not accepted",
        "path-option-relative",
    ),
    (
        with_action(
            {"module": "@nexrender/action-cache", "cacheDirectory": "/tmp/cache"}, "predownload"
        ),
        "actions.predownload[0].cacheDirectory",
        ROOTS_RULE,
        "cache-directory-outside",
    ),
    (
        with_action({"module": "@nexrender/action-compress", "input": ["a", "../../etc"]}),
        "actions.postrender[0].input[1]",
        TRAVERSAL,
        "input-list-element",
    ),
    (
        with_action(
            {"module": "@nexrender/action-encode", "output": "o.mp4", "params": {"-i": "/etc/x"}}
        ),
        "actions.postrender[0].params.-i",
        ROOTS_RULE,
        "encode-extra-input-outside",
    ),
    ({"template": TEMPLATE, "output": "/tmp/out.mov"}, "output", ROOTS_RULE, "job-output"),
    ({"template": TEMPLATE, "output": 5}, "output", "must be a string", "job-output-not-text"),
    ({"template": TEMPLATE, "uid": "../../x"}, "uid", TRAVERSAL, "uid-traversal"),
    (
        with_asset({"type": "static", "src": "https://h/f.ttf", "name": "..\\..\\f.ttf"}),
        "assets[0].name",
        TRAVERSAL,
        "asset-name-traversal",
    ),
    (
        {"template": {**TEMPLATE, "extension": "/../../x"}},
        "template.extension",
        TRAVERSAL,
        "template-extension-traversal",
    ),
    (
        with_asset({"type": "video", "src": "s3://b/v.zip", "layerIndex": 1, "decompressed": ".."}),
        "assets[0].decompressed",
        TRAVERSAL,
        "asset-decompressed-traversal",
    ),
]


@pytest.mark.parametrize(
    ("config", "field", "part"),
    [case[:3] for case in REFUSED_PATHS],
    ids=[case[3] for case in REFUSED_PATHS],
)
def test_a_refused_path_names_its_json_path_and_the_rule(
    config: dict[str, Any], field: str, part: str
) -> None:
    assert_one(problems(config), f"{CONFIG}.{field}", part)


def test_the_roots_rule_is_the_one_of_the_top_level_paths() -> None:
    """The same value gets the same message as template_path and inside nexrender_config."""
    for value in ("/etc/promo.aep", "file:///mnt/renders/../x.aep", "smb://nas/s/promo.aep"):
        top = render_spec_problems(
            dataclasses.replace(spec(None), template_path=value), allowed_roots=ROOTS
        )
        inside = problems(with_src(value))
        assert [p.message for p in top] == [p.message for p in inside], value


def test_without_roots_local_paths_are_free_but_traversal_schemes_and_modules_are_not() -> None:
    assert problems(with_src("/anywhere/promo.aep"), roots=()) == []
    assert problems(copy_to("C:\\Users\\me\\out.mp4"), roots=()) == []
    assert_one(problems(with_src("/a/../b.aep"), roots=()), f"{CONFIG}.template.src", TRAVERSAL)
    assert_one(problems(with_src("gopher://h/p.aep"), roots=()), f"{CONFIG}.template.src", "gopher")
    assert_one(
        problems(with_action({"module": "./evil.js"}), roots=()),
        f"{CONFIG}.actions.postrender[0].module",
        MODULE_RULE,
    )


# --- URI schemes ------------------------------------------------------------------------------

REFUSED_SCHEMES = [
    ("javascript:alert(1)//x.aep", "javascript"),
    ("data:text/plain;base64,eA==", "data"),
    ("smb://nas/share/promo.aep", "smb"),
    ("gopher://example.com/promo.aep", "gopher"),
    ("ldap://example.com/x", "ldap"),
    ("jar:file:///x.jar!/a", "jar"),
]


@pytest.mark.parametrize(("value", "scheme"), REFUSED_SCHEMES, ids=[s for _, s in REFUSED_SCHEMES])
def test_schemes_outside_the_default_list_are_refused_everywhere(value: str, scheme: str) -> None:
    rule = f"scheme '{scheme}' is not accepted"
    config = {
        "template": {**TEMPLATE, "src": value},
        "assets": [{"type": "image", "src": value, "layerName": "a"}],
        "actions": {"postrender": [{"module": "@nexrender/action-copy", "output": value}]},
    }
    found = problems(config)
    assert [p.field for p in found] == [
        f"{CONFIG}.template.src",
        f"{CONFIG}.assets[0].src",
        f"{CONFIG}.actions.postrender[0].output",
    ]
    assert all(rule in p.message for p in found), found
    top = render_spec_problems(dataclasses.replace(spec(None), template_path=value))
    assert_one(top, "template_path", rule)


def test_the_default_schemes_are_the_documented_ones() -> None:
    assert sorted(URI_SCHEMES) == sorted(("http", "https", "s3", "gs", "ftp", "sftp", "file"))


def test_configured_schemes_replace_the_default_list_for_every_path() -> None:
    only_https = ("https",)
    assert problems(with_src("https://cdn.example.com/p.aep"), schemes=only_https) == []
    assert_one(
        problems(with_src("s3://bucket/p.aep"), schemes=only_https),
        f"{CONFIG}.template.src",
        "must be an absolute path or a https URI (scheme 's3' is not accepted)",
    )
    assert_one(
        problems(with_src("file:///mnt/renders/p.aep"), schemes=only_https),
        f"{CONFIG}.template.src",
        "scheme 'file' is not accepted",
    )
    assert problems(with_src("/mnt/renders/p.aep"), schemes=only_https) == []
    top = render_spec_problems(
        dataclasses.replace(spec(None), output_path="s3://bucket/out.mp4"),
        allowed_uri_schemes=only_https,
    )
    assert_one(top, "output_path", "scheme 's3' is not accepted")
    with_smb = (*URI_SCHEMES, "smb")
    assert problems(with_src("smb://nas/share/promo.aep"), schemes=with_smb) == []


def test_a_relative_action_path_may_not_smuggle_a_scheme() -> None:
    assert_one(
        problems(copy_to("gopher:x.mp4")),
        f"{CONFIG}.actions.postrender[0].output",
        "scheme 'gopher' is not accepted",
    )


# --- action modules ---------------------------------------------------------------------------


def test_the_official_list_is_the_published_nexrender_actions() -> None:
    assert OFFICIAL_ACTIONS == (
        "@nexrender/action-cache",
        "@nexrender/action-compress",
        "@nexrender/action-copy",
        "@nexrender/action-decompress",
        "@nexrender/action-encode",
        "@nexrender/action-fonts",
        "@nexrender/action-image",
        "@nexrender/action-link",
        "@nexrender/action-lottie",
        "@nexrender/action-mogrt",
        "@nexrender/action-upload",
        "@nexrender/action-webhook",
    )


@pytest.mark.parametrize("module", OFFICIAL_ACTIONS)
def test_each_official_module_is_accepted_in_every_stage(module: str) -> None:
    for stage in ("predownload", "postdownload", "prerender", "postrender"):
        assert problems(with_action({"module": module}, stage)) == [], stage


REFUSED_MODULES = [
    ("./evil.js", True, "dot-slash"),
    ("../evil.js", True, "dot-dot-slash"),
    ("/abs/x.js", True, "absolute-posix"),
    ("/tmp/x.js", True, "tmp"),
    ("C:\\x.js", True, "windows-drive"),
    ("\\\\nas\\share\\x.js", True, "unc"),
    ("file:///tmp/x.js", True, "file-uri"),
    ("@nexrender/action-copy/../../x", True, "official-subpath-traversal"),
    ("@nexrender/action-copy/index.js", True, "official-subpath"),
    ("evil-package", False, "unknown-package"),
    ("@evil/action-copy", False, "other-scope"),
    ("@nexrender/action-encode-assets", False, "unpublished-official-name"),
    ("@NEXRENDER/action-copy", False, "case-differs"),
    (" @nexrender/action-copy", False, "leading-space"),
    ("@nexrender/action-copy@1.0.0", False, "with-version"),
    ("scripts/notify.js", True, "relative-without-dot"),
    ("~/evil.js", True, "home"),
    ("child_process", False, "node-builtin"),
]


@pytest.mark.parametrize(
    ("module", "path_like"),
    [case[:2] for case in REFUSED_MODULES],
    ids=[case[2] for case in REFUSED_MODULES],
)
def test_modules_off_the_list_are_refused_naming_the_allowed_ones(
    module: str, path_like: bool
) -> None:
    found = problems(with_action({"module": module}, "prerender"))
    assert_one(found, f"{CONFIG}.actions.prerender[0].module", MODULE_RULE)
    assert found[0].message.endswith(", ".join(OFFICIAL_ACTIONS))
    assert (PATH_HINT in found[0].message) is path_like


def test_an_extra_module_is_accepted_once_it_is_allowed_and_only_as_written() -> None:
    config = with_action({"module": "@studio/action-slack"})
    assert_one(problems(config), f"{CONFIG}.actions.postrender[0].module", MODULE_RULE)
    extra = ("@studio/action-slack", "./scripts/notify.js")
    assert problems(config, actions=extra) == []
    assert problems(with_action({"module": "./scripts/notify.js"}), actions=extra) == []
    for near in ("./scripts/notify.js ", "scripts/notify.js", "./scripts/../notify.js"):
        found = problems(with_action({"module": near}), actions=extra)
        assert_one(found, f"{CONFIG}.actions.postrender[0].module", MODULE_RULE)
        assert found[0].message.endswith("@studio/action-slack, ./scripts/notify.js")


@pytest.mark.parametrize(
    ("step", "part"),
    [
        ({"output": "x"}, "is required"),
        ({"module": 7}, "must be a string"),
        ({"module": " "}, "must not be empty"),
    ],
    ids=["missing", "not-text", "blank"],
)
def test_a_missing_or_empty_module_keeps_its_structure_message(
    step: dict[str, Any], part: str
) -> None:
    assert_one(problems(with_action(step)), f"{CONFIG}.actions.postrender[0].module", part)


def upload(provider: object) -> dict[str, Any]:
    return with_action({"module": "@nexrender/action-upload", "provider": provider})


@pytest.mark.parametrize(
    "provider", [*UPLOAD_PROVIDERS, *(f"@nexrender/provider-{p}" for p in UPLOAD_PROVIDERS)]
)
def test_official_upload_providers_are_accepted(provider: str) -> None:
    assert problems(upload(provider)) == []


@pytest.mark.parametrize("provider", ["/tmp/evil.js", "./evil", "evil-provider", "s3/../../x"])
def test_upload_providers_are_modules_too(provider: str) -> None:
    """action-upload requires `@nexrender/provider-<p>`, and failing that `<p>` itself."""
    found = problems(upload(provider))
    assert_one(found, f"{CONFIG}.actions.postrender[0].provider", "allowed upload providers")
    assert problems(upload(provider), actions=(provider,)) == []


def test_provider_is_only_a_module_for_action_upload() -> None:
    assert problems(with_action({"module": "@nexrender/action-webhook", "provider": "x"})) == []


# --- order and completeness -------------------------------------------------------------------


def test_every_problem_is_listed_in_the_order_of_the_json() -> None:
    config = {
        "template": {"src": "file:///etc/promo.aep", "composition": 3},
        "assets": [
            {"type": "image", "src": "https://cdn.example.com/a.png", "layerName": "a"},
            {"type": "image", "src": "/tmp/b.png", "layerName": "b"},
            {"type": "audio", "src": "gopher://h/c.wav", "layerIndex": 1},
        ],
        "actions": {
            "prerender": [{"module": "@nexrender/action-decompress", "format": "zip"}],
            "postrender": [
                {"module": "./evil.js", "output": "/etc/x"},
                {"output": "../x", "module": "@nexrender/action-copy", "input": "/root/y"},
            ],
        },
        "uid": "../up",
    }
    assert [p.field for p in problems(config)] == [
        f"{CONFIG}.template.src",
        f"{CONFIG}.template.composition",
        f"{CONFIG}.assets[1].src",
        f"{CONFIG}.assets[2].src",
        f"{CONFIG}.actions.postrender[0].module",
        f"{CONFIG}.actions.postrender[0].output",
        f"{CONFIG}.actions.postrender[1].output",
        f"{CONFIG}.actions.postrender[1].input",
        f"{CONFIG}.uid",
    ]


def test_the_order_follows_the_json_not_a_fixed_order_of_sections() -> None:
    config = {
        "actions": {"postrender": [{"module": "evil"}]},
        "assets": [{"type": "image", "src": "/tmp/a.png", "layerName": "a"}],
        "template": {**TEMPLATE, "src": "/tmp/t.aep"},
    }
    assert [p.field for p in problems(config)] == [
        f"{CONFIG}.actions.postrender[0].module",
        f"{CONFIG}.assets[0].src",
        f"{CONFIG}.template.src",
    ]


def test_a_missing_key_comes_first_in_its_object() -> None:
    config = {"template": {"frameStart": "1", "src": "/tmp/t.aep"}}
    assert [p.field for p in problems(config)] == [
        f"{CONFIG}.template.composition",
        f"{CONFIG}.template.frameStart",
        f"{CONFIG}.template.src",
    ]


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, URI_SCHEMES),
        ("", URI_SCHEMES),
        (" , ,", URI_SCHEMES),
        ("https", ("https",)),
        (" HTTPS , s3,https ", ("https", "s3")),
        ("git+ssh,x-custom.v1", ("git+ssh", "x-custom.v1")),
    ],
    ids=["unset", "empty", "blanks", "one", "trimmed-lowered-deduplicated", "plus-dot-dash"],
)
def test_parse_uri_schemes(raw: str | None, expected: tuple[str, ...]) -> None:
    assert parse_uri_schemes(raw) == expected


@pytest.mark.parametrize(
    "bad", ["https:", "https://", "ht tp", "1http", "+x", "s3;gs", "é", "\u212aelvin", "a/b"]
)
def test_parse_uri_schemes_refuses_a_bad_scheme_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="RENDERTRACK_ALLOWED_URI_SCHEMES") as refused:
        parse_uri_schemes(f"https,{bad}")
    assert repr(bad) in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        (" ,, ", ()),
        ("@studio/action-slack", ("@studio/action-slack",)),
        (" a , ./x.js,a ", ("a", "./x.js")),
        ("C:\\actions\\x.js", ("C:\\actions\\x.js",)),
    ],
    ids=["unset", "blanks", "one", "trimmed-deduplicated", "windows-path"],
)
def test_parse_allowed_actions(raw: str | None, expected: tuple[str, ...]) -> None:
    assert parse_allowed_actions(raw) == expected


def test_parse_allowed_actions_refuses_control_characters_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="RENDERTRACK_ALLOWED_ACTIONS") as refused:
        parse_allowed_actions("ok,bad\x1bmodule")
    assert repr("bad\x1bmodule") in str(refused.value)


def test_settings_read_both_variables_and_hand_them_to_the_service() -> None:
    default = Settings.from_env({})
    assert default.allowed_uri_schemes == URI_SCHEMES and default.allowed_actions == ()
    assert default.service_settings().allowed_uri_schemes == URI_SCHEMES
    loaded = Settings.from_env(
        {
            "RENDERTRACK_ALLOWED_URI_SCHEMES": "HTTPS, s3",
            "RENDERTRACK_ALLOWED_ACTIONS": "@studio/action-slack, ./x.js",
        }
    )
    assert loaded.allowed_uri_schemes == ("https", "s3")
    assert loaded.allowed_actions == ("@studio/action-slack", "./x.js")
    service = loaded.service_settings()
    assert service.allowed_uri_schemes == ("https", "s3")
    assert service.allowed_actions == ("@studio/action-slack", "./x.js")
    assert settings.ServiceSettings().allowed_uri_schemes == URI_SCHEMES
    assert settings.ServiceSettings().allowed_actions == ()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RENDERTRACK_ALLOWED_URI_SCHEMES", "https://"), ("RENDERTRACK_ALLOWED_ACTIONS", "a\nb")],
)
def test_settings_refuse_a_bad_value_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        Settings.from_env({variable: value})


def test_the_help_lists_both_variables() -> None:
    assert "RENDERTRACK_ALLOWED_URI_SCHEMES" in ENVIRONMENT_HELP
    assert "RENDERTRACK_ALLOWED_ACTIONS" in ENVIRONMENT_HELP


def test_the_command_refuses_a_bad_scheme_setting_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENDERTRACK_")}
    env["RENDERTRACK_ALLOWED_URI_SCHEMES"] = "https:"
    env["RENDERTRACK_DATABASE_URL"] = f"sqlite://{tmp_path / 'never.sqlite3'}"
    script = Path(sys.executable).parent / "rendertrack"
    result = subprocess.run(
        [str(script), "users", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "RENDERTRACK_ALLOWED_URI_SCHEMES" in result.stderr and "'https:'" in result.stderr
    assert not (tmp_path / "never.sqlite3").exists()


# --- through submit_job -------------------------------------------------------------------------


def submission(config: dict[str, Any] | None, **overrides: object) -> JobSubmission:
    fields: dict[str, object] = {
        "project_name": "Promo",
        "output_name": "promo.mp4",
        "template_path": "/mnt/renders/promo.aep",
        "data_path": "/mnt/renders/promo.json",
        "output_path": "/mnt/renders/promo.mp4",
        "nexrender_config": config,
    }
    return JobSubmission(**{**fields, **overrides})  # type: ignore[arg-type]


async def submit(owner: Actor, config: dict[str, Any], **configured: Any) -> Job:
    previous = settings.configure(settings.ServiceSettings(allowed_roots=ROOTS, **configured))
    try:
        job = await jobs.submit_job(owner, submission(config))
    finally:
        settings.configure(previous)
    return await Job.get(id=job.id)


async def test_a_config_within_the_rules_is_queued(owner: Actor) -> None:
    job = await submit(owner, NEXRENDER_README_JOB)
    assert job.status is JobStatus.QUEUED, job.error_message


async def test_a_config_with_several_problems_fails_listing_each_in_order(owner: Actor) -> None:
    config = {
        "template": {"src": "file:///etc/promo.aep", "composition": "main"},
        "assets": [
            {"type": "image", "src": "gopher://h/a.png", "layerName": "a"},
            {"type": "image", "src": "https://cdn.example.com/b.png", "layerName": "b"},
            {"type": "script", "src": "file:///mnt/renders/%2e%2e/x.jsx"},
        ],
        "actions": {
            "postrender": [
                {"module": "@nexrender/action-encode", "preset": "mp4", "output": "e.mp4"},
                {"module": "/tmp/x.js"},
                {"module": "@nexrender/action-copy", "output": "/srv/stolen.mp4"},
            ]
        },
    }
    job = await submit(owner, config)
    assert job.status is JobStatus.FAILED
    expected = [
        f"{CONFIG}.template.src: {ROOTS_RULE}",
        f"{CONFIG}.assets[0].src: must be an absolute path or a file, http, https, s3, gs, ftp "
        "or sftp URI (scheme 'gopher' is not accepted)",
        f"{CONFIG}.assets[2].src: {TRAVERSAL}",
        f"{CONFIG}.actions.postrender[1].module: {MODULE_RULE} {PATH_HINT}",
        f"{CONFIG}.actions.postrender[2].output: {ROOTS_RULE}",
    ]
    message = job.error_message or ""
    lines = [line.removeprefix("- ") for line in message.splitlines()[1:]]
    assert len(lines) == len(expected), message
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)


async def test_a_refused_config_can_be_retried_only_to_fail_again(owner: Actor) -> None:
    job = await submit(owner, with_action({"module": "./evil.js"}))
    assert job.status is JobStatus.FAILED
    previous = settings.configure(settings.ServiceSettings(allowed_roots=ROOTS))
    try:
        again = await jobs.retry(job.id, actor=owner)
    finally:
        settings.configure(previous)
    assert again.status is JobStatus.FAILED
    assert f"{CONFIG}.actions.postrender[0].module" in (again.error_message or "")


async def test_an_extra_module_is_queued_once_the_service_allows_it(owner: Actor) -> None:
    config = with_action({"module": "@studio/action-slack"})
    refused = await submit(owner, config)
    assert refused.status is JobStatus.FAILED
    allowed = await submit(owner, config, allowed_actions=("@studio/action-slack",))
    assert allowed.status is JobStatus.QUEUED, allowed.error_message


async def test_the_service_schemes_decide_which_uris_a_config_may_use(owner: Actor) -> None:
    config = with_src("s3://bucket/promo.aep")
    assert (await submit(owner, config)).status is JobStatus.QUEUED
    refused = await submit(owner, config, allowed_uri_schemes=("https",))
    assert refused.status is JobStatus.FAILED
    assert "scheme 's3' is not accepted" in (refused.error_message or "")


@pytest.mark.parametrize(
    ("config", "field", "part"),
    [
        ({"template": {**TEMPLATE, "name": "/etc/cron.d/x"}}, "template.name", "absolute"),
        ({"template": {**TEMPLATE, "name": "C:\\Windows\\x"}}, "template.name", "absolute"),
        ({"template": TEMPLATE, "uid": "/etc"}, "uid", "absolute"),
        ({"template": {**TEMPLATE, "outputExt": "../../x"}}, "template.outputExt", "extension"),
        ({"template": {**TEMPLATE, "outputExt": "mp4/x"}}, "template.outputExt", "extension"),
    ],
    ids=["name-absolute", "name-drive", "uid-absolute", "ext-traversal", "ext-separator"],
)
def test_names_joined_to_the_job_folder_stay_inside_it(
    config: dict[str, Any], field: str, part: str
) -> None:
    assert_one(problems(config), f"{CONFIG}.{field}", part)


def test_a_plain_output_extension_and_name_are_fine() -> None:
    config = {"template": {**TEMPLATE, "outputExt": "mov", "name": "template.aep"}, "uid": "job-1"}
    assert problems(config) == []
