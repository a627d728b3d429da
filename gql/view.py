"""The ASGI GraphQL endpoint: builds each request's context from its bearer token, decides
which browser pages may open a websocket, serves GraphiQL from rendertrack's own files, and
applies GraphQL over HTTP's rules (gql/http_protocol.py) to every HTTP request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import OperationDefinitionNode, validate
from graphql import OperationType as OperationKind
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.types import QueryParams
from strawberry.http.websocket_origin import is_same_origin
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET

from gql.connections import ConnectionRegistry, TooManyConnections
from gql.context import Context, user_from_header
from gql.defaults import (
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_MAX_COST,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
)
from gql.http_protocol import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    Refusal,
    check_content_type,
    chosen,
    describe,
    document_of,
    is_request_error,
    json_response,
    malformed,
    method_not_allowed,
    negotiate,
    not_acceptable,
    quoted,
    refusal_of,
    request_data_of,
    request_error,
    request_error_status,
    service_unavailable,
)
from gql.schema import schema as default_schema
from gql.ws_handlers import LegacyWSHandler, TransportWSHandler, reject
from models.reachability import database_unreachable, warn_unreachable

logger = logging.getLogger(__name__)

# What the log shows for a request whose client left before sending it whole (nginx's code).
CLIENT_CLOSED_REQUEST = 499
# The websocket close code for "the server cannot serve this now; reconnect later" (RFC 6455
# registry): unlike 4403, a client keeps its token and retries.
TRY_AGAIN_LATER = 1013

ALLOWED_ORIGINS_VARIABLE = "RENDERTRACK_ALLOWED_ORIGINS"
# An Origin header is the client's text: the log line quotes at most this much of it.
LOGGED_ORIGIN_CHARS = 200

# GraphiQL, every file of which rendertrack serves itself (app/static/graphiql/README.md).
GRAPHIQL_PAGE = (Path(__file__).resolve().parent / "graphiql.html").read_text(encoding="utf-8")
GRAPHIQL_HEADERS = {
    # GraphiQL's fonts are data: URLs inside its stylesheet; React sets inline styles.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
        "img-src 'self' data:; font-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


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

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(GRAPHIQL_PAGE, headers=GRAPHIQL_HEADERS)

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
            return await self.run_http(request, context, root_value)
        if not self.accepts_websocket_origin(request):
            return await self.reject_websocket(request)
        try:
            return await super().run(request, context, root_value)
        finally:
            self.connections.discard(request)

    async def run_http(self, request: Request, context: Any, root_value: Any) -> Response:
        """GraphiQL for a browser; otherwise a GraphQL response in the negotiated media type,
        refusals included (Strawberry answers those in plain text)."""
        if request.method not in ("GET", "POST"):
            return self.refusal_response(method_not_allowed(), JSON)
        if self.should_render_graphql_ide(self.request_adapter_class(request)):
            return await self.render_graphql_ide(request)
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            return self.refusal_response(not_acceptable(), JSON)
        request.state.graphql_media_type = media_type
        try:
            response = await super().run(request, context, root_value)
        except HTTPException as error:
            return self.refusal_response(refusal_of(error), media_type)
        except ClientDisconnect:
            # The client went away before its body arrived: nobody to answer, nothing to log
            # as the server's failure.
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        status = getattr(request.state, "graphql_request_error_status", None)
        if media_type == GRAPHQL_RESPONSE_JSON and status is not None:
            response.status_code = status
            if status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
        response.headers["content-type"] = f"{media_type}; charset=utf-8"
        return response

    def refusal_response(self, refusal: Refusal, media_type: str) -> Response:
        return json_response(refusal.body(), refusal.status_code, media_type, refusal.headers)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        if request.method == "GET":
            return request_data_of(self.query_string_parameters(request.query_params))
        check_content_type(request.content_type)
        body = await request.get_body()
        if not body.strip():
            raise malformed('The request body is empty: send {"query": "..."} as JSON.')
        try:
            data = self.decode_json(body)
        except json.JSONDecodeError as error:
            raise malformed(f"The request body is not valid JSON: {describe(error)}.") from None
        return request_data_of(data)

    def query_string_parameters(self, parameters: QueryParams) -> dict[str, object]:
        data: dict[str, object] = {
            "query": parameters.get("query"),
            "operationName": parameters.get("operationName"),
        }
        for name in ("variables", "extensions"):
            text = parameters.get(name)
            if not isinstance(text, str) or not text:
                continue
            try:
                data[name] = self.decode_json(text)
            except json.JSONDecodeError as error:
                why = f"is not valid JSON: {describe(error)}"
                raise malformed(f"The {name} parameter {why}.", (name, why)) from None
        return data

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Runs one operation: queries over GET, queries and mutations over POST. The choices
        Strawberry answers with a plain-text 400 become GraphQL request errors, and a mutation
        over GET is 405."""
        allowed = {OperationType.QUERY}
        if request_adapter.method == "POST":
            allowed.add(OperationType.MUTATION)
        query = request_data.query or ""
        document = document_of(query)
        if document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if request_data.operation_name is None and len(operations) > 1:
                # Strawberry would run the first one.
                return request_error(
                    "The document holds several operations: name the one to run in operationName.",
                    "GRAPHQL_VALIDATION_FAILED",
                )
            operation = chosen(operations, request_data.operation_name)
            if operation is not None and operation.operation is OperationKind.SUBSCRIPTION:
                if not validate(self.schema._schema, document):
                    return request_error(
                        "Subscriptions are served over a websocket to /graphql "
                        "(graphql-transport-ws), not over HTTP.",
                        "OPERATION_NOT_ALLOWED",
                    )
                # Not valid: Strawberry's validation says why (hiding the schema from a
                # caller without a token), and nothing runs.
                allowed.add(OperationType.SUBSCRIPTION)
        try:
            return await self.schema.execute(
                query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError:
            # Only a mutation over GET gets here: subscriptions were dealt with above.
            raise Refusal(
                405,
                "A mutation cannot be sent with GET: send it with POST.",
                "OPERATION_NOT_ALLOWED",
                headers={"Allow": "POST"},
            ) from None
        except CannotGetOperationTypeError as error:
            name = error.operation_name
            message = (
                "The document holds no operation to run."
                if name is None
                else f"The document has no operation named {quoted(name)}."
            )
            return request_error(message, "GRAPHQL_VALIDATION_FAILED")
        except MissingQueryError:
            return request_error(
                "The query is empty: send a GraphQL document.", "GRAPHQL_VALIDATION_FAILED"
            )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if is_request_error(result):
            assert result.errors is not None
            request.state.graphql_request_error_status = request_error_status(result.errors)
            if getattr(request.state, "graphql_media_type", JSON) == GRAPHQL_RESPONSE_JSON:
                # The media type's sign of a request error: the response has no data entry.
                response.pop("data", None)
        return response

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
        try:
            user = await user_from_header(request.headers.get("authorization"))
        except Exception as error:  # the server's trouble, not the client's
            _token_check_failed(error)
            if not isinstance(request, WebSocket):
                raise service_unavailable() from None
            user = None  # a websocket authenticates with connection_init, checked again there
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
            try:
                context.user = await user_from_header(header)
            except Exception as error:  # not the client's doing
                _token_check_failed(error)
                reject(
                    context,
                    "The server cannot reach its database; reconnect in a few seconds.",
                    code="SERVICE_UNAVAILABLE",
                    close_code=TRY_AGAIN_LATER,
                )
        if context.user is None:
            reject(context, "A valid API token is required.")
        if isinstance(context.request, WebSocket):
            try:
                self.connections.admit(context.request, context.user)
            except TooManyConnections as refusal:
                reject(context, refusal.reason, code="TOO_MANY_CONNECTIONS", detail=str(refusal))


def _token_check_failed(error: Exception) -> None:
    """The client is told to come back later either way; the log says whether the database was
    away (a warning) or something else failed (an error with its traceback)."""
    if database_unreachable(error):
        warn_unreachable(logger, "Checking a token", error)
    else:
        logger.error("Checking a token failed", exc_info=error)
