"""Reading a request's JSON object (the size cap is app/body_limit.py's: 413 past it)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from domain.errors import BadUserInput

BODY = "(body)"


class BodyUnread(Exception):
    """Reading the body failed below the API (past the size limit, the client gone): the
    endpoint re-raises `cause` for the app's middleware (413) or server to answer."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def json_object(request: Request) -> dict[str, Any]:
    try:
        raw = await request.body()
    except Exception as error:
        raise BodyUnread(error) from error
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadUserInput.single(BODY, "must be JSON (a Nexrender job object)") from None
    if not isinstance(value, dict):
        raise BadUserInput.single(BODY, "must be a JSON object (a Nexrender job)")
    return value
