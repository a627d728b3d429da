"""Turning refusals into GraphQL errors with a code, and hiding everything unexpected.

Codes (extensions.code): UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, BAD_USER_INPUT (with
extensions.fields), INVALID_TRANSITION (with extensions.from and .to), CONFLICT,
GRAPHQL_VALIDATION_FAILED for a malformed query, INTERNAL_SERVER_ERROR for anything else, whose
traceback is logged on the server and never sent. The HTTP transport (gql/view.py) adds
NOT_ACCEPTABLE (406), UNSUPPORTED_MEDIA_TYPE (415), METHOD_NOT_ALLOWED (405),
SERVICE_UNAVAILABLE (503: the token could not be checked, the database did not answer) and
OPERATION_NOT_ALLOWED (a subscription over HTTP, a mutation over GET). A field whose resolver
could not reach the database is SERVICE_UNAVAILABLE too, logged as a warning without traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.execution import ExecutionContext

from domain.errors import BadUserInput, DomainError, FieldError, InvalidTransition
from models.reachability import UNREACHABLE_MESSAGE, database_unreachable, warn_unreachable

logger = logging.getLogger("rendertrack.graphql")

INTERNAL_MESSAGE = "Internal server error: the failure was logged on the server."


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__(
            "A valid API token is required: send the header 'Authorization: Bearer <token>'."
        )


def camel_case(field: str) -> str:
    """`nexrender_config.assets[0].src` -> `nexrenderConfig.assets[0].src`: the input names of
    the wire; nested names inside JSON are the client's own and stay as they are."""
    head, dot, rest = field.partition(".")
    head = re.sub(r"_([a-z0-9])", lambda match: match.group(1).upper(), head)
    return head + dot + rest


def extensions_of(error: DomainError) -> dict[str, Any]:
    extensions: dict[str, Any] = {"code": error.code}
    if isinstance(error, BadUserInput):
        extensions["fields"] = [_field(item) for item in error.errors]
    if isinstance(error, InvalidTransition):
        extensions["from"] = error.found
        extensions["to"] = error.wanted
    return extensions


def _field(item: FieldError) -> dict[str, str]:
    return {"field": camel_case(item.field), "message": item.message}


def message_of(error: DomainError) -> str:
    if isinstance(error, BadUserInput):
        return "Invalid input: " + "; ".join(
            f"{camel_case(item.field)}: {item.message}" for item in error.errors
        )
    return error.message


def translate(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, InvalidOperationTypeError):  # e.g. a query over legacy graphql-ws
        message = f"{error.message} here: send them over HTTP POST or graphql-transport-ws."
        return _rebuilt(error, message, {"code": "OPERATION_NOT_ALLOWED"})
    if isinstance(original, DomainError):
        return _rebuilt(error, message_of(original), extensions_of(original))
    if error.extensions and "code" in error.extensions:
        return error
    if isinstance(original, GraphQLError) and original.extensions.get("code"):
        return _rebuilt(error, original.message, dict(original.extensions))
    if _is_request_error(error):
        if error.message.startswith("Variable"):
            return _rebuilt(error, error.message, _variable_extensions(error.message))
        return _rebuilt(error, error.message, {"code": "GRAPHQL_VALIDATION_FAILED"})
    if _is_outage(error):
        return _rebuilt(error, UNREACHABLE_MESSAGE, {"code": "SERVICE_UNAVAILABLE"})
    return _rebuilt(error, INTERNAL_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"})


# graphql-core's wording of a variable of the wrong type, with the path inside the variable:
#   Variable '$input' has invalid value at .maxAttempts: Int cannot represent ...
#   Variable '$input' got invalid value 'x' at 'input.maxAttempts'; Int cannot represent ...
_VARIABLE_AT = re.compile(
    r"^Variable '\$(?P<variable>[^']+)' has invalid value at (?P<path>[^:]+): (?P<why>.*)$",
    re.DOTALL,
)
_VARIABLE_GOT = re.compile(
    r"^Variable '\$(?P<variable>[^']+)' got invalid value .*? at '(?P<path>[^']+)'; (?P<why>.*)$",
    re.DOTALL,
)
_VARIABLE = re.compile(r"^Variable '\$(?P<variable>[^']+)'")


def _variable_extensions(message: str) -> dict[str, Any]:
    """A variable of the wrong type: BAD_USER_INPUT naming the input field, as for any other
    bad input (the path inside the variable, else the variable itself)."""
    field, why = "variables", message
    if found := _VARIABLE_AT.match(message):
        path = found.group("path")
        field = path[1:] if path.startswith(".") else found.group("variable") + path
        why = found.group("why")
    elif found := _VARIABLE_GOT.match(message):
        variable, path = found.group("variable"), found.group("path")
        field = path.removeprefix(f"{variable}.") if path != variable else variable
        why = found.group("why")
    elif found := _VARIABLE.match(message):
        field = found.group("variable")
    return {"code": "BAD_USER_INPUT", "fields": [{"field": field or "variables", "message": why}]}


def _is_request_error(error: GraphQLError) -> bool:
    """Raised while parsing, validating or coercing the request, before any resolver ran: the
    client's doing, and its message speaks of the client's own text."""
    return error.path is None and (
        error.original_error is None or isinstance(error.original_error, GraphQLError)
    )


def _is_outage(error: GraphQLError) -> bool:
    """A resolver that failed because the database could not be reached: not a defect."""
    return error.original_error is not None and database_unreachable(error.original_error)


def is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    if isinstance(original, InvalidOperationTypeError):  # the client's choice of transport
        return False
    if original is None or isinstance(original, DomainError) or _is_request_error(error):
        return False
    if isinstance(original, GraphQLError) and original.extensions.get("code"):
        return False
    return not _is_outage(error)


def _rebuilt(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


def log_unexpected(errors: list[GraphQLError], context: ExecutionContext | None) -> None:
    """Strawberry logs every error with a traceback; only unexpected ones deserve it."""
    for error in errors:
        original = error.original_error
        if original is not None and database_unreachable(original):
            warn_unreachable(logger, f"field {error.path}", original)
        elif is_unexpected(error):
            logger.error(
                "unexpected error in %s",
                error.path,
                exc_info=(type(error.original_error), error.original_error, error.__traceback__),
            )


class ErrorCodes(SchemaExtension):
    """Rewrites every error of a result into its coded, client-safe form."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and getattr(result, "errors", None):
            result.errors = [translate(error) for error in result.errors]
