"""The Nexrender job that rendertrack accepts as nexrender_config (shared NEXRENDER.md): its
structure (a template with src and composition, assets by type, actions by stage) and what it
may reach on a render node (access):

- every path in it - template.src, each asset's src, the job's output, and the actions' `input`,
  `output` and options named `...path`/`...Path`/`...directory`/`...Directory` - follows the
  rule of the job's own paths (domain/paths.py): an absolute path inside the allowed roots, or a
  URI with an accepted scheme (a `file:` URI is a local path), never with a '..' segment. An
  action's `input` and `output` may also be relative: Nexrender reads them inside the job's
  folder.
- the names Nexrender joins to the job's folder (`uid`, and `name`, `extension`, `decompressed`
  of the template and the assets) have no '..' segment.
- a worker `require()`s each action's module, and @nexrender/action-upload its `provider`: only
  the official modules (`OFFICIAL_ACTIONS`, `UPLOAD_PROVIDERS`) and those the server allows
  (RENDERTRACK_ALLOWED_ACTIONS) are accepted, each exactly as listed.

Problems come in the order of the JSON: within an object, a missing required key first, then
its keys as they come."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from domain.errors import FieldError
from domain.paths import (
    URI_SCHEMES,
    has_control_characters,
    has_parent_segment,
    names_a_place,
    reference_problems,
)

ASSET_TYPES = ("image", "audio", "video", "data", "script", "static")
LAYER_ASSET_TYPES = ("image", "audio", "video")
ACTION_STAGES = ("predownload", "postdownload", "prerender", "postrender")
_TEMPLATE_INTEGERS = ("frameStart", "frameEnd", "frameIncrement", "incrementFrame")
_TEMPLATE_STRINGS = ("outputExt", "outputModule", "settingsTemplate")
_CONFIG = "nexrender_config"
_MAX_KEY_IN_FIELD = 64
# The action modules published under @nexrender on npm (each checked with `npm view`), from the
# packages of github.com/inlife/nexrender.
OFFICIAL_ACTIONS = (
    "@nexrender/action-cache", "@nexrender/action-compress", "@nexrender/action-copy",
    "@nexrender/action-decompress", "@nexrender/action-encode", "@nexrender/action-fonts",
    "@nexrender/action-image", "@nexrender/action-link", "@nexrender/action-lottie",
    "@nexrender/action-mogrt", "@nexrender/action-upload", "@nexrender/action-webhook",
)  # fmt: skip
UPLOAD_ACTION = "@nexrender/action-upload"
ENCODE_ACTION = "@nexrender/action-encode"
# action-upload requires `@nexrender/provider-<provider>`, and failing that `<provider>` itself.
UPLOAD_PROVIDERS = ("s3", "gs", "ftp", "sftp", "nx")
_PROVIDER_PACKAGE = "@nexrender/provider-"
_WORK_OPTIONS = ("input", "output")  # relative ones are read inside the job's folder
_PATH_OPTION_SUFFIXES = ("path", "Path", "directory", "Directory")
_WORK_NAMES = ("name", "extension", "decompressed")  # joined to the job's folder
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,16}")


def is_int(value: object) -> bool:
    """An integer that is not a bool (JSON true is no number)."""
    return isinstance(value, int) and not isinstance(value, bool)


def key_in_field(key: object) -> str:
    """A JSON key as shown in a dotted field path: NUL and surrogates escaped, shortened."""
    text = key if isinstance(key, str) else repr(key)
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= _MAX_KEY_IN_FIELD else text[:_MAX_KEY_IN_FIELD] + "..."


def _text_problems(value: object, field: str) -> list[FieldError]:
    if not isinstance(value, str):
        return [FieldError(field, "must be a string")]
    if not value.strip():
        return [FieldError(field, "must not be empty")]
    return []


def _missing(owner: dict[str, Any], keys: Sequence[str], path: str) -> list[FieldError]:
    return [FieldError(f"{path}.{key}", "is required") for key in keys if key not in owner]


def _integer_problems(value: object, field: str) -> list[FieldError]:
    return [] if is_int(value) else [FieldError(field, "must be an integer")]


def _string_problems(value: object, field: str) -> list[FieldError]:
    return [] if isinstance(value, str) else [FieldError(field, "must be a string")]


def parse_allowed_actions(value: str | None) -> tuple[str, ...]:
    """RENDERTRACK_ALLOWED_ACTIONS: module names a worker may also load, beside
    `OFFICIAL_ACTIONS`, separated by commas, trimmed, blanks and repeats ignored. Each is
    matched exactly (a path is allowed only as written here). ValueError for a control
    character."""
    modules: list[str] = []
    for entry in (value or "").split(","):
        module = entry.strip()
        if not module:
            continue
        if has_control_characters(module):
            raise ValueError(
                f"RENDERTRACK_ALLOWED_ACTIONS: {module!r} must not contain control characters"
            )
        if module not in modules:
            modules.append(module)
    return tuple(modules)


@dataclass(frozen=True)
class _Access:
    """What a nexrender_config may reach: the job's path rule, and the modules to load."""

    roots: tuple[str, ...]
    schemes: tuple[str, ...]
    modules: tuple[str, ...]  # the official action modules, then the extra allowed ones
    extra: tuple[str, ...]  # the extra allowed ones only

    def path(self, value: object, field: str, *, relative: bool = False) -> list[FieldError]:
        """A path option: a string, or a list whose strings are paths (action-compress's
        `input`). Other values are not paths and left to the action."""
        if isinstance(value, list):
            return [
                problem
                for index, item in enumerate(value)
                if isinstance(item, str)
                for problem in self.path(item, f"{field}[{index}]", relative=relative)
            ]
        if not isinstance(value, str):
            return []
        return reference_problems(
            field, value, self.roots, uri_schemes=self.schemes, relative=relative
        )

    def output(self, value: object, field: str) -> list[FieldError]:
        """The job's own output (null: Nexrender's default, inside the job's folder)."""
        if value is None:
            return []
        return reference_problems(field, value, self.roots, uri_schemes=self.schemes)


def _work_name_problems(value: object, field: str) -> list[FieldError]:
    """A name Nexrender joins to the job's folder: a plain relative name, never a way out."""
    if not isinstance(value, str):
        return []
    if has_parent_segment(value):
        return [FieldError(field, "must not contain a '..' segment")]
    if names_a_place(value):
        return [FieldError(field, "must be a name inside the job's folder, not an absolute path")]
    return []


def _extension_problems(value: object, field: str) -> list[FieldError]:
    """outputExt becomes the end of a file name: letters and digits only."""
    if isinstance(value, str) and not _EXTENSION.fullmatch(value):
        return [FieldError(field, "must be a file extension: letters and digits, like 'mp4'")]
    return []


def _source_problems(value: object, field: str, access: _Access) -> list[FieldError]:
    return _text_problems(value, field) or access.path(value, field)


def _template_problems(template: object, path: str, access: _Access) -> list[FieldError]:
    if not isinstance(template, dict):
        return [FieldError(path, "must be an object with src and composition")]
    problems = _missing(template, ("src", "composition"), path)
    for key, value in template.items():
        field = f"{path}.{key_in_field(key)}"
        if key == "src":
            problems += _source_problems(value, field, access)
        elif key == "composition":
            problems += _text_problems(value, field)
        elif key in _TEMPLATE_INTEGERS:
            problems += _integer_problems(value, field)
        elif key == "outputExt":
            problems += _string_problems(value, field) or _extension_problems(value, field)
        elif key in _TEMPLATE_STRINGS:
            problems += _string_problems(value, field)
        elif key in _WORK_NAMES:
            problems += _work_name_problems(value, field)
    return problems


def _asset_missing(asset: dict[str, Any], kind: str, path: str) -> list[FieldError]:
    problems = [] if kind == "data" else _missing(asset, ("src",), path)
    layered = kind == "data" or kind in LAYER_ASSET_TYPES
    if layered and "layerName" not in asset and "layerIndex" not in asset:
        problems.append(FieldError(f"{path}.layerName", "is required unless layerIndex is given"))
    if kind == "data":
        problems += _missing(asset, ("property",), path)
        if "value" not in asset and "expression" not in asset:
            problems.append(FieldError(f"{path}.value", "is required unless expression is given"))
    return problems


def _asset_key_problems(
    kind: str, key: str, value: object, field: str, access: _Access
) -> list[FieldError]:
    layered = kind == "data" or kind in LAYER_ASSET_TYPES
    if key == "src":  # a data asset is not downloaded, but a src it carries is still a path
        return (
            access.path(value, field) if kind == "data" else _source_problems(value, field, access)
        )
    if key == "layerName" and layered:
        return _text_problems(value, field)
    if key == "layerIndex" and layered:
        return _integer_problems(value, field)
    if key == "property" and kind == "data":
        return _text_problems(value, field)
    if key == "expression" and kind == "data":
        return _string_problems(value, field)
    if key in _WORK_NAMES:
        return _work_name_problems(value, field)
    return []


def _asset_problems(asset: object, path: str, access: _Access) -> list[FieldError]:
    if not isinstance(asset, dict):
        return [FieldError(path, "must be an object")]
    kind = asset.get("type")
    if kind not in ASSET_TYPES:
        return [FieldError(f"{path}.type", f"must be one of {', '.join(ASSET_TYPES)}")]
    problems = _asset_missing(asset, kind, path)
    for key, value in asset.items():
        problems += _asset_key_problems(kind, key, value, f"{path}.{key_in_field(key)}", access)
    return problems


def _assets_problems(assets: object, path: str, access: _Access) -> list[FieldError]:
    if not isinstance(assets, list):
        return [FieldError(path, "must be a list of asset objects")]
    return [
        problem
        for index, asset in enumerate(assets)
        for problem in _asset_problems(asset, f"{path}[{index}]", access)
    ]


def _names_a_file(module: str) -> bool:
    """A path (relative, absolute, drive, UNC, URI) or a file inside a package, not a name."""
    name = module.strip()
    if name.startswith((".", "/", "\\", "~")) or "\\" in name or ":" in name:
        return True
    return name.count("/") > (1 if name.startswith("@") else 0)


def _module_problems(module: object, field: str, access: _Access) -> list[FieldError]:
    if not isinstance(module, str) or not module.strip():
        return _text_problems(module, field)
    if module in access.modules:
        return []
    hint = " (a path to a script is not one)" if _names_a_file(module) else ""
    allowed = ", ".join(access.modules)
    return [FieldError(field, f"must be one of the allowed action modules{hint}: {allowed}")]


def _provider_problems(provider: object, field: str, access: _Access) -> list[FieldError]:
    """action-upload requires `@nexrender/provider-<provider>`, else `<provider>` itself."""
    if not isinstance(provider, str) or provider in access.extra:
        return []
    name = provider.removeprefix(_PROVIDER_PACKAGE)
    if name in UPLOAD_PROVIDERS:
        return []
    allowed = ", ".join((*UPLOAD_PROVIDERS, *access.extra))
    return [FieldError(field, f"must be one of the allowed upload providers: {allowed}")]


def _option_problems(
    module: object, key: str, value: object, field: str, access: _Access
) -> list[FieldError]:
    if key in _WORK_OPTIONS:
        return access.path(value, field, relative=True)
    if key.endswith(_PATH_OPTION_SUFFIXES):
        return access.path(value, field)
    if key == "provider" and module == UPLOAD_ACTION:
        return _provider_problems(value, field, access)
    if key == "params" and module == ENCODE_ACTION and isinstance(value, dict) and "-i" in value:
        return access.path(value["-i"], f"{field}.-i", relative=True)  # more inputs for ffmpeg
    return _located_values_problems(value, field, access)


def _located_values_problems(value: object, field: str, access: _Access) -> list[FieldError]:
    """Any other option, however named or nested: every string in it that names a place (an
    absolute path, a drive path, a URI) follows the path rule, and no string climbs out with
    '..'. An action can read or write what its options name (ffmpeg's arguments, a fonts
    folder, an upload target)."""
    if isinstance(value, dict):
        return [
            problem
            for key, item in value.items()
            for problem in _located_values_problems(item, f"{field}.{key_in_field(key)}", access)
        ]
    if isinstance(value, list):
        return [
            problem
            for index, item in enumerate(value)
            for problem in _located_values_problems(item, f"{field}[{index}]", access)
        ]
    if not isinstance(value, str):
        return []
    if names_a_place(value):
        return access.path(value, field)
    if has_parent_segment(value):
        return [FieldError(field, "must not contain a '..' segment")]
    return []


def _step_problems(step: object, path: str, access: _Access) -> list[FieldError]:
    if not isinstance(step, dict):
        return [FieldError(path, "must be an object with a module")]
    problems = _missing(step, ("module",), path)
    module = step.get("module")
    for key, value in step.items():
        field = f"{path}.{key_in_field(key)}"
        if key == "module":
            problems += _module_problems(value, field, access)
        elif isinstance(key, str):
            problems += _option_problems(module, key, value, field, access)
    return problems


def _stage_problems(steps: object, path: str, access: _Access) -> list[FieldError]:
    if not isinstance(steps, list):
        return [FieldError(path, "must be a list of action objects")]
    return [
        problem
        for index, step in enumerate(steps)
        for problem in _step_problems(step, f"{path}[{index}]", access)
    ]


def _actions_problems(actions: object, path: str, access: _Access) -> list[FieldError]:
    stages = ", ".join(ACTION_STAGES)
    if not isinstance(actions, dict):
        return [FieldError(path, f"must be an object whose keys are among {stages}")]
    problems: list[FieldError] = []
    for stage, steps in actions.items():
        stage_path = f"{path}.{key_in_field(stage)}"
        if stage not in ACTION_STAGES:
            problems.append(FieldError(stage_path, f"is not an action stage: use {stages}"))
        else:
            problems.extend(_stage_problems(steps, stage_path, access))
    return problems


def nexrender_config_problems(
    config: object,
    *,
    allowed_roots: Sequence[str] = (),
    allowed_uri_schemes: Sequence[str] = URI_SCHEMES,
    allowed_actions: Sequence[str] = (),
) -> list[FieldError]:
    """Every problem of a nexrender_config, at its dotted path, in the order of the JSON: its
    structure (what Nexrender accepts) and its access (paths under `allowed_roots` or URIs
    with `allowed_uri_schemes`, action modules among `OFFICIAL_ACTIONS` plus
    `allowed_actions`). Unknown keys are kept (plugins add their own), except unknown action
    stages. Never raises."""
    if not isinstance(config, dict):
        return [FieldError(_CONFIG, "must be a JSON object")]
    extra = tuple(module for module in allowed_actions if module not in OFFICIAL_ACTIONS)
    access = _Access(
        roots=tuple(allowed_roots),
        schemes=tuple(allowed_uri_schemes),
        modules=(*OFFICIAL_ACTIONS, *extra),
        extra=extra,
    )
    problems: list[FieldError] = []
    if "template" not in config:
        message = "is required: an object with src and composition"
        problems.append(FieldError(f"{_CONFIG}.template", message))
    for key, value in config.items():
        path = f"{_CONFIG}.{key_in_field(key)}"
        if key == "template":
            problems += _template_problems(value, path, access)
        elif key == "assets":
            problems += _assets_problems(value, path, access)
        elif key == "actions":
            problems += _actions_problems(value, path, access)
        elif key == "output":  # where After Effects renders to (Nexrender's job.output)
            problems += access.output(value, path)
        elif key == "uid":  # the name of the job's folder
            problems += _work_name_problems(value, path)
    return problems
