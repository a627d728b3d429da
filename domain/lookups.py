"""What a client may look things up by: ids and search terms.

An id that cannot exist is answered as not found without asking the database: PostgreSQL would
refuse a NUL byte, and a column's length rule would refuse an overlong value, as errors.
"""

from __future__ import annotations

import re

from domain.errors import BadUserInput
from domain.paths import has_control_characters
from domain.validation import storage_problem

# cuid2 ids, as models/base.py makes them: lower-case letters and digits, at most the id
# columns' length (a longer value would be refused by the column's rule, as an error).
ID_LENGTH = 25
_ID = re.compile(rf"[a-z0-9]{{1,{ID_LENGTH}}}")
MAX_SEARCH_LENGTH = 255


def is_well_formed_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(value: object, field: str) -> str:
    """For ids used as filters, where an impossible id is a malformed request."""
    if not is_well_formed_id(value):
        raise BadUserInput.single(field, "is not an id (lower-case letters and digits)")
    return str(value)


def check_search(value: object, field: str = "search") -> str:
    if not isinstance(value, str):
        raise BadUserInput.single(field, "must be a string")
    term = value.strip()
    if len(term) > MAX_SEARCH_LENGTH:
        raise BadUserInput.single(field, f"must be at most {MAX_SEARCH_LENGTH} characters")
    if has_control_characters(term):
        raise BadUserInput.single(field, "must not contain control characters")
    if (problem := storage_problem(term)) is not None:
        raise BadUserInput.single(field, problem)
    return term
