"""Who calls: the rendertrack token in Nexrender's `nexrender-secret` header."""

from __future__ import annotations

from starlette.requests import Request

from domain.errors import DomainError
from domain.policy import Actor
from service import users

SECRET_HEADER = "nexrender-secret"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__(
            f"Wrong or no authentication secret provided: send a rendertrack API token in the "
            f"'{SECRET_HEADER}' header."
        )


async def authenticate(request: Request) -> Actor:
    """The active user whose token the request carries; Unauthenticated (403) otherwise."""
    user = await users.authenticate(request.headers.get(SECRET_HEADER, "").strip() or None)
    if user is None:
        raise Unauthenticated()
    return users.actor_of(user)
