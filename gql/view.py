"""The ASGI GraphQL endpoint: builds each request's context from its bearer token, and decides
which browser pages may open a websocket."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http.websocket_origin import is_same_origin
from strawberry.types.unset import UNSET

from gql.connections import DEFAULT_MAX_CONNECTIONS_PER_USER, ConnectionRegistry, TooManyConnections
from gql.context import Context, user_from_header
from gql.cost import DEFAULT_MAX_COST
from gql.schema import schema as default_schema
from gql.ws_handlers import LegacyWSHandler, TransportWSHandler, reject

logger = logging.getLogger(__name__)

ALLOWED_ORIGINS_VARIABLE = "RENDERTRACK_ALLOWED_ORIGINS"
DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION = 100
# An Origin header is the client's text: the log line quotes at most this much of it.
LOGGED_ORIGIN_CHARS = 200


class RendertrackGraphQL(GraphQL):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(
        self,
        *,
        public_introspection: bool = False,
        allowed_origins: Sequence[str] = (),
        max_connections_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER,
        max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
        max_query_cost: int = DEFAULT_MAX_COST,
    ) -> None:
        super().__init__(
            default_schema, graphql_ide="graphiql", allowed_origins=list(allowed_origins)
        )
        self.public_introspection = public_introspection
        # This process's websockets by user: revocations close them; each user has a share.
        self.connections = ConnectionRegistry(max_connections_per_user)
        self.max_subscriptions_per_connection = max_subscriptions_per_connection
        self.max_query_cost = max_query_cost

    def decode_json(self, data: str | bytes) -> object:
        """A body that is not UTF-8, or nested too deep to parse, is a malformed request (400),
        not a server error."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise json.JSONDecodeError(f"the body is not UTF-8: {error}", "", 0) from None
        try:
            return json.loads(data)
        except RecursionError:
            raise json.JSONDecodeError("the body is nested too deeply", "", 0) from None

    async def run(
        self,
        request: Request | WebSocket,
        context: Any = UNSET,
        root_value: Any = UNSET,
    ) -> Response | WebSocket:
        if not isinstance(request, WebSocket):
            return await super().run(request, context, root_value)
        if not self.accepts_websocket_origin(request):
            return await self.reject_websocket(request)
        try:
            return await super().run(request, context, root_value)
        finally:
            self.connections.discard(request)

    def accepts_websocket_origin(self, websocket: WebSocket) -> bool:
        """Strawberry's rule for a websocket handshake, with a refusal that names the setting.

        Accepted: no Origin header (not a browser: CLI clients, workers), the server's own
        origin as the handshake's Host header names it (GraphiQL at http://localhost:8000/graphql
        subscribing to ws://localhost:8000/graphql), and the origins of `allowed_origins`
        (RENDERTRACK_ALLOWED_ORIGINS). Refused, with one log line: any other page, since a
        browser lets a page on any origin open a websocket to this server. Strawberry checks
        again in `run`; what passes here passes there.
        """
        headers = websocket.headers
        origin = headers.get("origin")
        if origin is None:
            return True
        host = headers.get("host")
        if headers.get("sec-fetch-site") == "same-origin" or is_same_origin(origin, host):
            return True
        if self.is_websocket_origin_allowed(websocket, origin):
            return True
        logger.warning(
            "Refused a websocket from a page on %r (this server is %r); to let pages on that "
            "origin subscribe, add it to %s (comma-separated origins).",
            origin[:LOGGED_ORIGIN_CHARS],
            (host or "")[:LOGGED_ORIGIN_CHARS],
            ALLOWED_ORIGINS_VARIABLE,
        )
        return False

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        user = await user_from_header(request.headers.get("authorization"))
        return Context(
            request=request,
            response=response,
            user=user,
            public_introspection=self.public_introspection,
            bus=getattr(request.app.state, "bus", None),
            max_query_cost=self.max_query_cost,
        )

    async def on_ws_connect(self, context: Context) -> None:  # type: ignore[override]
        """Authenticates `connection_init` and admits the connection to its user's share. A
        refusal closes the socket with 4403 and says why (gql/ws_handlers.py)."""
        if isinstance(context.request, WebSocket) and context.request in self.connections:
            # The legacy protocol lets a client send connection_init again: it may not change
            # who the connection is.
            reject(context, "connection_init was already received on this connection.")
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        header = params.get("Authorization") or params.get("authorization")
        if isinstance(header, str):
            context.user = await user_from_header(header)
        if context.user is None:
            reject(context, "A valid API token is required.")
        if isinstance(context.request, WebSocket):
            try:
                self.connections.admit(context.request, context.user)
            except TooManyConnections as refusal:
                reject(context, refusal.reason, code="TOO_MANY_CONNECTIONS", detail=str(refusal))
