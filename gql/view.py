"""The ASGI GraphQL endpoint: builds each request's context from its bearer token."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError

from gql.context import Context, user_from_header
from gql.schema import schema as default_schema


class RendertrackGraphQL(GraphQL):
    def __init__(
        self,
        *,
        public_introspection: bool = False,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        super().__init__(
            default_schema, graphql_ide="graphiql", allowed_origins=list(allowed_origins)
        )
        self.public_introspection = public_introspection

    def decode_json(self, data: str | bytes) -> object:
        """A body that is not UTF-8 is a malformed request (400), not a server error."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise json.JSONDecodeError(f"the body is not UTF-8: {error}", "", 0) from None
        return json.loads(data)

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
        )

    async def on_ws_connect(self, context: Context) -> None:  # type: ignore[override]
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        header = params.get("Authorization") or params.get("authorization")
        if isinstance(header, str):
            context.user = await user_from_header(header)
        if context.user is None:
            raise ConnectionRejectionError({"message": "A valid API token is required."})
