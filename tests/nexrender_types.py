"""@nexrender/types 1.62.0's `validate(job)` and the keys of `getRenderingStatus(job)`, ported
line for line (JavaScript's truthiness included), so that every job JSON the API answers can be
checked without Node. The tests with the real packages check the same with the package itself."""

from __future__ import annotations

from typing import Any

STATUS_KEYS = (
    "uid", "state", "type", "tags", "renderProgress", "error", "createdAt", "updatedAt",
    "startedAt", "finishedAt", "errorAt", "jobCreator", "jobExecutor", "timings",
)  # fmt: skip


def truthy(value: Any) -> bool:
    """JavaScript's: every object and array is true; "", 0, null and undefined are false."""
    if isinstance(value, dict | list):
        return True
    return bool(value)


def validate(job: dict[str, Any]) -> bool:
    assert truthy(job.get("uid")), "job must have uid"
    assert truthy(job.get("state")), "job must have state"
    template = job.get("template")
    assert truthy(template), "job must have template object defined"
    assert isinstance(template, dict)
    assert truthy(template.get("src")), "job must have template.src defined"
    assert truthy(template.get("composition")), "job must have template.composition defined"

    assets = job.get("assets")
    assert isinstance(assets, list), "TypeError: job.assets.map is not a function"
    for asset in assets:
        assert truthy(asset), "job asset should not be empty"
        kind = asset.get("type")
        assert truthy(kind), "job asset must have type defined"
        if kind in ("image", "audio", "video"):
            assert truthy(asset.get("src"))
            assert truthy(asset.get("layerName")) or truthy(asset.get("layerIndex"))
        elif kind == "data":
            assert truthy(asset.get("layerName")) or truthy(asset.get("layerIndex"))
            assert "value" in asset or truthy(asset.get("expression"))
            assert truthy(asset.get("property"))
        elif kind in ("script", "static"):
            assert truthy(asset.get("src"))
        else:
            raise AssertionError(f"unknown job asset type: {kind}")

    actions = job.get("actions")
    assert truthy(actions)
    prerender = actions.get("prerender") if truthy(actions.get("prerender")) else []
    postrender = actions.get("postrender") if truthy(actions.get("postrender")) else []
    for action in [*prerender, *postrender]:
        assert truthy(action), "job action must be defined"
        assert truthy(action.get("module")), "job action must have module defined"
    return True


def validate_status(view: dict[str, Any]) -> bool:
    """A status view has exactly getRenderingStatus's keys."""
    assert tuple(view) == STATUS_KEYS, tuple(view)
    assert truthy(view["uid"]) and truthy(view["state"])
    return True
