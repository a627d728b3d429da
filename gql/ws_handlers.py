"""Strawberry's two websocket protocol handlers, with the subscription cap's refusal coded and
explained: Strawberry sends a bare "Subscription limit reached"."""

from __future__ import annotations

from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

STRAWBERRY_LIMIT_MESSAGE = "Subscription limit reached"
CODE = "TOO_MANY_SUBSCRIPTIONS"


def limit_error(limit: int | None) -> dict[str, Any]:
    return {
        "message": f"This connection already carries {limit} operations, the most one may "
        "(RENDERTRACK_MAX_SUBSCRIPTIONS_PER_CONNECTION): complete one, or open another "
        "connection.",
        "extensions": {"code": CODE, "limit": limit},
    }


def _coded(message: Any, limit: int | None) -> Any:
    if not isinstance(message, dict) or message.get("type") != "error":
        return message
    payload = message.get("payload")
    errors = payload if isinstance(payload, list) else [payload]
    if any(isinstance(e, dict) and e.get("message") == STRAWBERRY_LIMIT_MESSAGE for e in errors):
        coded = limit_error(limit)
        return {**message, "payload": [coded] if isinstance(payload, list) else coded}
    return message


class TransportWSHandler(BaseGraphQLTransportWSHandler):
    async def send_message(self, message: Any) -> None:
        await super().send_message(_coded(message, self.max_subscriptions_per_connection))


class LegacyWSHandler(BaseGraphQLWSHandler):
    async def send_message(self, message: Any) -> None:
        await super().send_message(_coded(message, self.max_subscriptions_per_connection))
