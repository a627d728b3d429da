"""Per-request context: who is asking (from the bearer token) and the request's DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from domain.policy import Actor
from gql.errors import Unauthenticated
from models import User
from service import queries, users
from service.bus import EventBus

BEARER = "bearer "


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    user: User | None
    public_introspection: bool = False
    connection_params: Any = None
    bus: EventBus | None = None
    # One DataLoader per request: a page of jobs loads its owners in one query.
    users_by_id: DataLoader[str, User | None] = field(
        default_factory=lambda: DataLoader(load_fn=queries.users_by_ids)
    )

    @property
    def actor(self) -> Actor | None:
        return None if self.user is None else users.actor_of(self.user)


def bearer_token(header: str | None) -> str | None:
    if not header or not header.lower().startswith(BEARER):
        return None
    return header[len(BEARER) :].strip() or None


async def user_from_header(header: str | None) -> User | None:
    return await users.authenticate(bearer_token(header))


def require_actor(info: Info[Context, None]) -> Actor:
    actor = info.context.actor
    if actor is None:
        raise Unauthenticated()
    return actor
