"""The structure of a Nexrender job that rendertrack accepts as nexrender_config (shared
NEXRENDER.md): a template with src and composition, assets by type, actions by stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.errors import FieldError

ASSET_TYPES = ("image", "audio", "video", "data", "script", "static")
LAYER_ASSET_TYPES = ("image", "audio", "video")
ACTION_STAGES = ("predownload", "postdownload", "prerender", "postrender")
_TEMPLATE_INTEGERS = ("frameStart", "frameEnd", "frameIncrement", "incrementFrame")
_TEMPLATE_STRINGS = ("outputExt", "outputModule", "settingsTemplate")
_CONFIG = "nexrender_config"
_MAX_KEY_IN_FIELD = 64


def is_int(value: object) -> bool:
    """An integer that is not a bool (JSON true is no number)."""
    return isinstance(value, int) and not isinstance(value, bool)


def key_in_field(key: object) -> str:
    """A JSON key as shown in a dotted field path: NUL and surrogates escaped, shortened."""
    text = key if isinstance(key, str) else repr(key)
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= _MAX_KEY_IN_FIELD else text[:_MAX_KEY_IN_FIELD] + "..."


def _required_text(owner: dict[str, Any], key: str, path: str) -> list[FieldError]:
    field = f"{path}.{key}"
    if key not in owner:
        return [FieldError(field, "is required")]
    if not isinstance(owner[key], str):
        return [FieldError(field, "must be a string")]
    if not owner[key].strip():
        return [FieldError(field, "must not be empty")]
    return []


def _optional(
    owner: dict[str, Any], keys: Sequence[str], path: str, *, integer: bool
) -> list[FieldError]:
    """Problems of optional keys that must hold an integer (not a bool) or a string."""
    message = "must be an integer" if integer else "must be a string"
    return [
        FieldError(f"{path}.{key}", message)
        for key in keys
        if key in owner and not (is_int(owner[key]) if integer else isinstance(owner[key], str))
    ]


def _template_problems(config: dict[str, Any], path: str) -> list[FieldError]:
    if "template" not in config:
        return [FieldError(path, "is required: an object with src and composition")]
    template = config["template"]
    if not isinstance(template, dict):
        return [FieldError(path, "must be an object with src and composition")]
    return [
        *_required_text(template, "src", path),
        *_required_text(template, "composition", path),
        *_optional(template, _TEMPLATE_INTEGERS, path, integer=True),
        *_optional(template, _TEMPLATE_STRINGS, path, integer=False),
    ]


def _layer_problems(asset: dict[str, Any], path: str) -> list[FieldError]:
    if "layerName" not in asset and "layerIndex" not in asset:
        return [FieldError(f"{path}.layerName", "is required unless layerIndex is given")]
    problems = _required_text(asset, "layerName", path) if "layerName" in asset else []
    return problems + _optional(asset, ("layerIndex",), path, integer=True)


def _data_value_problems(asset: dict[str, Any], path: str) -> list[FieldError]:
    if "value" not in asset and "expression" not in asset:
        return [FieldError(f"{path}.value", "is required unless expression is given")]
    return _optional(asset, ("expression",), path, integer=False)


def _asset_problems(asset: object, path: str) -> list[FieldError]:
    if not isinstance(asset, dict):
        return [FieldError(path, "must be an object")]
    kind = asset.get("type")
    if kind not in ASSET_TYPES:
        return [FieldError(f"{path}.type", f"must be one of {', '.join(ASSET_TYPES)}")]
    if kind == "data":
        return [
            *_layer_problems(asset, path),
            *_required_text(asset, "property", path),
            *_data_value_problems(asset, path),
        ]
    problems = _required_text(asset, "src", path)
    return problems + (_layer_problems(asset, path) if kind in LAYER_ASSET_TYPES else [])


def _assets_problems(config: dict[str, Any], path: str) -> list[FieldError]:
    assets = config.get("assets", [])
    if not isinstance(assets, list):
        return [FieldError(path, "must be a list of asset objects")]
    return [
        problem
        for index, asset in enumerate(assets)
        for problem in _asset_problems(asset, f"{path}[{index}]")
    ]


def _stage_problems(steps: object, path: str) -> list[FieldError]:
    if not isinstance(steps, list):
        return [FieldError(path, "must be a list of action objects")]
    problems: list[FieldError] = []
    for index, step in enumerate(steps):
        step_path = f"{path}[{index}]"
        if not isinstance(step, dict):
            problems.append(FieldError(step_path, "must be an object with a module"))
        else:
            problems.extend(_required_text(step, "module", step_path))
    return problems


def _actions_problems(config: dict[str, Any], path: str) -> list[FieldError]:
    actions = config.get("actions", {})
    stages = ", ".join(ACTION_STAGES)
    if not isinstance(actions, dict):
        return [FieldError(path, f"must be an object whose keys are among {stages}")]
    problems: list[FieldError] = []
    for stage, steps in actions.items():
        stage_path = f"{path}.{key_in_field(stage)}"
        if stage not in ACTION_STAGES:
            problems.append(FieldError(stage_path, f"is not an action stage: use {stages}"))
        else:
            problems.extend(_stage_problems(steps, stage_path))
    return problems


def nexrender_structure_problems(config: object) -> list[FieldError]:
    """Every problem of a nexrender_config with the structure Nexrender accepts, at its dotted
    path. Unknown keys are kept (plugins add their own), except unknown action stages."""
    if not isinstance(config, dict):
        return [FieldError(_CONFIG, "must be a JSON object")]
    return [
        *_template_problems(config, f"{_CONFIG}.template"),
        *_assets_problems(config, f"{_CONFIG}.assets"),
        *_actions_problems(config, f"{_CONFIG}.actions"),
    ]
