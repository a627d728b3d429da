"""What a resolver's caller selected below it, for reads that can fetch more at once."""

from __future__ import annotations

from collections.abc import Iterable

from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection


def asks_for(info: Info, name: str) -> bool:
    """Whether the field this resolver serves selects `name` directly below it (through
    fragments too)."""
    return any(_names(field.selections, name) for field in info.selected_fields)


def _names(selections: Iterable[Selection], name: str) -> bool:
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name == name:
                return True
        elif isinstance(selection, FragmentSpread | InlineFragment) and _names(
            selection.selections, name
        ):
            return True
    return False
