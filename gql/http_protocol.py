"""GraphQL over HTTP (https://graphql.github.io/graphql-over-http/draft/), the rules gql/view.py
applies to every HTTP request: media types, status codes and the refusals of malformed requests.

- The answer's media type follows the Accept header: `application/graphql-response+json` when
  the client names it and prefers it at least as much as `application/json`; otherwise
  `application/json`, also for `*/*` and for no Accept header at all. (Since 2025 the
  specification would answer a request without Accept in the new media type; the workers and
  scripts that send none, or `*/*`, expect the 200s of `application/json`.) A client that
  accepts neither gets 406.
- With `application/json` every well-formed request is answered 200, errors or not. With
  `application/graphql-response+json`, a request error (the document does not parse or
  validate, a variable is invalid, the operation cannot be chosen) is answered without `data`:
  401 when its only errors are UNAUTHENTICATED (introspection without a token), 500 for
  INTERNAL_SERVER_ERROR, else 400. A document that ran is answered 200 with `data`, even when
  a field failed; a missing or invalid token is such a field error (UNAUTHENTICATED, `data`
  null, 200): the schema decides who may read what, field by field.
- A POST body must be `Content-Type: application/json` (UTF-8), else 415. A request that is not
  a well-formed GraphQL-over-HTTP request (not JSON, not an object, `query` missing or not a
  string, `operationName` not a string, `variables` or `extensions` not an object) is 400, and
  the error names the parameter. A mutation sent with GET is 405 with `Allow: POST`;
  subscriptions are served over the websocket only.
- Every refusal is a GraphQL response, `{"errors": [...]}` with `extensions.code`, in the
  negotiated media type (406: in `application/json`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from cross_web import HTTPException
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode
from starlette.responses import Response
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult

from gql.limits import DOCUMENTS
from models.reachability import RETRY_AFTER_SECONDS, UNREACHABLE_MESSAGE

# The client's text quoted back in a refusal (a media type, an operation name): at most this much.
QUOTED_CHARS = 100

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
UTF8 = frozenset({"utf-8", "utf8"})


class Refusal(HTTPException):
    """A request refused before it runs, answered as a GraphQL response: one error with
    `extensions.code`, and for a malformed parameter `extensions.fields` naming it, as
    BAD_USER_INPUT does for the fields of an input."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        field: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message)
        self.code = code
        self.field = field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        extensions: dict[str, Any] = {"code": self.code}
        if self.field is not None:
            name, why = self.field
            extensions["fields"] = [{"field": name, "message": why}]
        return {"errors": [{"message": self.reason, "extensions": extensions}]}


def malformed(message: str, field: tuple[str, str] | None = None) -> Refusal:
    """400: not a well-formed GraphQL-over-HTTP request; `field` is (parameter, what is wrong)."""
    return Refusal(400, message, "BAD_USER_INPUT", field=field)


def refusal_of(error: HTTPException) -> Refusal:
    """Strawberry's own refusals (plain text) as coded ones."""
    if isinstance(error, Refusal):
        return error
    if error.status_code == 405:
        return method_not_allowed()
    return malformed(error.reason)


def method_not_allowed() -> Refusal:
    return Refusal(
        405,
        "/graphql answers GET (queries) and POST.",
        "METHOD_NOT_ALLOWED",
        headers={"Allow": "GET, POST"},
    )


def service_unavailable() -> Refusal:
    """The token could not be checked: the server's database did not answer. Not the client's
    fault and not a crash: 503, coded, with when to try again."""
    return Refusal(
        503,
        UNREACHABLE_MESSAGE,
        "SERVICE_UNAVAILABLE",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def quoted(text: str) -> str:
    return repr(text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS] + "...")


# === content negotiation ======================================================================


def _media_ranges(accept: str) -> Iterator[tuple[str, float]]:
    """(`type/subtype`, q) of each range of an Accept header; a range with a malformed q, or
    asking for another charset than the UTF-8 every answer uses, is left out."""
    for part in accept.split(","):
        name, *parameters = (piece.strip() for piece in part.split(";"))
        if "/" not in name:
            continue
        quality = 1.0
        acceptable = True
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"').lower()
            if key == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    acceptable = False
            elif key == "charset" and value not in UTF8:
                acceptable = False
        if acceptable:
            yield name.lower(), quality


def _quality(ranges: list[tuple[str, float]], media_type: str) -> tuple[float, bool]:
    """The q the client gives `media_type` (by its most specific matching range, as RFC 9110
    says), and whether it names it exactly."""
    kind = media_type.split("/")[0]
    for specificity, pattern in ((2, media_type), (1, f"{kind}/*"), (0, "*/*")):
        matching = [quality for name, quality in ranges if name == pattern]
        if matching:
            return max(matching), specificity == 2
    return 0.0, False


def negotiate(accept: str | None) -> str | None:
    """The media type of the answer, or None when the client accepts neither (406).

    `application/graphql-response+json` only when the client names it and gives it a q at
    least as high as `application/json`'s (`*/*` alone keeps legacy clients on
    `application/json`, as does a request without Accept)."""
    if accept is None or not accept.strip():
        return JSON
    ranges = list(_media_ranges(accept))
    graphql_q, named = _quality(ranges, GRAPHQL_RESPONSE_JSON)
    json_q, _ = _quality(ranges, JSON)
    if graphql_q > json_q or (named and graphql_q == json_q > 0):
        return GRAPHQL_RESPONSE_JSON
    if json_q > 0:
        return JSON
    return None


def not_acceptable() -> Refusal:
    return Refusal(
        406,
        f"/graphql answers in {GRAPHQL_RESPONSE_JSON} or {JSON}, and the Accept header allows "
        f"neither: send 'Accept: {GRAPHQL_RESPONSE_JSON}, {JSON};q=0.9'.",
        "NOT_ACCEPTABLE",
    )


def check_content_type(value: str | None) -> None:
    """A POST body is JSON in UTF-8: `application/json`, with or without `charset=utf-8`."""
    wanted = f"send the body as JSON with 'Content-Type: {JSON}'"
    if value is None or not value.strip():
        raise Refusal(415, f"The request has no Content-Type: {wanted}.", "UNSUPPORTED_MEDIA_TYPE")
    name, *parameters = (piece.strip() for piece in value.split(";"))
    if name.lower() != JSON:
        raise Refusal(
            415, f"Unsupported Content-Type {quoted(name)}: {wanted}.", "UNSUPPORTED_MEDIA_TYPE"
        )
    for parameter in parameters:
        key, _, charset = parameter.partition("=")
        if key.strip().lower() == "charset" and charset.strip().strip('"').lower() not in UTF8:
            raise Refusal(
                415,
                f"Unsupported charset {quoted(charset.strip())}: the body must be UTF-8.",
                "UNSUPPORTED_MEDIA_TYPE",
            )


# === the request's parameters ==================================================================


def request_data_of(data: object) -> GraphQLRequestData:
    """The parameters of a well-formed GraphQL-over-HTTP request; a malformed one is refused,
    naming the parameter. (null stands for an absent optional parameter.)"""
    if isinstance(data, list):
        raise malformed("Batched requests (a JSON array) are not supported: send one object.")
    if not isinstance(data, dict):
        raise malformed('The request must be a JSON object: {"query": "...", "variables": {}}.')
    query = data.get("query")
    if query is None:
        raise malformed(
            "The query parameter is missing: send the GraphQL document in it.",
            ("query", "is required"),
        )
    if not isinstance(query, str):
        raise malformed(
            "The query parameter must be a string: the GraphQL document.",
            ("query", "must be a string"),
        )
    operation_name = data.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise malformed(
            "The operationName parameter must be a string.", ("operationName", "must be a string")
        )
    for name in ("variables", "extensions"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise malformed(
                f"The {name} parameter must be a JSON object.", (name, "must be a JSON object")
            )
    return GraphQLRequestData(
        query=query,
        variables=data.get("variables"),
        operation_name=operation_name or None,
        extensions=data.get("extensions"),
    )


def document_of(query: str) -> DocumentNode | None:
    """The parsed document, or None when it does not parse (Strawberry reports why, within its
    own limits). Parsed within MAX_TOKENS and kept for the execution that follows
    (gql/limits.py DOCUMENTS)."""
    try:
        return DOCUMENTS.parse(query)
    except GraphQLError:
        return None


def chosen(
    operations: list[OperationDefinitionNode], name: str | None
) -> OperationDefinitionNode | None:
    """The operation the request runs: the one named, or the only one."""
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def request_error(message: str, code: str) -> ExecutionResult:
    """A GraphQL request error: nothing ran, and the response has no data."""
    return ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": code})])


def is_request_error(result: ExecutionResult) -> bool:
    """No data and no error at a field: the request failed before execution (parsing,
    validation, variables, choosing the operation) or outside of any field."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors)
    )


def request_error_status(errors: list[GraphQLError]) -> int:
    codes = {(error.extensions or {}).get("code") for error in errors}
    if "INTERNAL_SERVER_ERROR" in codes:
        return 500
    if codes == {"UNAUTHENTICATED"}:
        return 401
    return 400


def json_response(
    body: object, status: int, media_type: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=dict(headers or {}),
        media_type=f"{media_type}; charset=utf-8",
    )


def describe(error: json.JSONDecodeError) -> str:
    """What is wrong with a JSON text, and where."""
    if not error.doc:  # raised by decode_json itself, with a sentence of its own
        return error.msg
    return f"{error.msg} at line {error.lineno}, column {error.colno}"
