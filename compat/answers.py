"""Answers of the Nexrender API: JSON, and refusals as JSON with an HTTP status and a code
(never a stack trace)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from compat.auth import Unauthenticated, authenticate
from compat.body import BodyUnread
from domain.errors import (
    BadUserInput,
    Conflict,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
)
from domain.policy import Actor
from models.reachability import (
    RETRY_AFTER_SECONDS,
    UNREACHABLE_MESSAGE,
    database_unreachable,
    warn_unreachable,
)

logger = logging.getLogger("rendertrack.nexrender")

INTERNAL_MESSAGE = "Internal server error: the failure was logged on the server."

_STATUS: dict[type[DomainError], int] = {
    Unauthenticated: 403,  # what @nexrender/server answers for a wrong or missing secret
    BadUserInput: 400,
    Forbidden: 403,
    NotFound: 404,
    InvalidTransition: 409,
    Conflict: 409,
}

Handler = Callable[[Request, Actor], Awaitable[Response]]


def answer(content: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code)


def refusal(error: DomainError) -> JSONResponse:
    body: dict[str, Any] = {"error": error.message, "code": error.code}
    if isinstance(error, BadUserInput):
        body["fields"] = [{"field": item.field, "message": item.message} for item in error.errors]
    if isinstance(error, InvalidTransition):
        body["from"], body["to"] = error.found, error.wanted
    status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 400)
    return answer(body, status)


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route of the API: the caller authenticated by its secret, refusals answered."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request, await authenticate(request))
        except DomainError as error:
            return refusal(error)
        except BodyUnread as unread:
            raise unread.cause from None
        except Exception as error:
            if database_unreachable(error):
                return unavailable(request, error)
            logger.exception("%s %s failed", request.method, request.url.path)
            return answer({"error": INTERNAL_MESSAGE, "code": "INTERNAL_SERVER_ERROR"}, 500)

    return run


def unavailable(request: Request, error: BaseException) -> JSONResponse:
    """The database could not be reached: not the caller's fault and not a defect. 503 with
    when to try again; a Nexrender worker retries its pickup or report on its next round."""
    warn_unreachable(logger, f"{request.method} {request.url.path}", error)
    return JSONResponse(
        {"error": UNREACHABLE_MESSAGE, "code": "SERVICE_UNAVAILABLE"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
