"""A job's tags: Nexrender's comma-separated labels that send a job to the workers asking for
them (`GET /api/v1/jobs/pickup/:tags` hands out only jobs carrying every tag asked for). Stored
normalised, as the tags joined by commas (None when there are none). Pure."""

from __future__ import annotations

import re

from domain.errors import BadUserInput

MAX_TAG_LENGTH = 64
MAX_TAGS = 15
# Fits the tags column (models/job.py): MAX_TAGS tags of MAX_TAG_LENGTH, with their commas.
MAX_TAGS_LENGTH = 1024
# Letters, digits and a few marks: a tag travels in a URL path (/jobs/pickup/:tags), so no
# '/', and no ',' (the separator) or space.
_TAG = re.compile(r"[\w.:+@-]+")


def parse_tags(value: object, field: str = "tags") -> tuple[str, ...]:
    """The tags of a comma-separated string (or a list of strings), trimmed, blanks and repeats
    dropped, in their order. None or "" is no tags. BadUserInput naming `field` otherwise."""
    if value is None:
        return ()
    if isinstance(value, str):
        entries: list[object] = list(value.split(","))
    elif isinstance(value, list | tuple):
        entries = list(value)
    else:
        raise BadUserInput.single(field, "must be a comma-separated string of tags")
    tags: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise BadUserInput.single(field, "must be a comma-separated string of tags")
        tag = entry.strip()
        if not tag or tag in tags:
            continue
        if len(tag) > MAX_TAG_LENGTH or not _TAG.fullmatch(tag):
            raise BadUserInput.single(
                field,
                f"has a tag {tag[:MAX_TAG_LENGTH]!r} that is not 1 to {MAX_TAG_LENGTH} letters, "
                "digits or the marks _ . : + @ -",
            )
        tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise BadUserInput.single(field, f"must hold at most {MAX_TAGS} tags")
    return tuple(tags)


def format_tags(tags: tuple[str, ...]) -> str | None:
    """The stored form: the tags joined by commas, None for none."""
    return ",".join(tags) or None


def tags_of(stored: str | None) -> tuple[str, ...]:
    return tuple(stored.split(",")) if stored else ()
