"""What a single request may ask for, and who may introspect the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, GraphQLError, ValidationRule
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

MAX_DEPTH = 10
MAX_TOKENS = 2000
MAX_ALIASES = 20
MAX_BODY_BYTES = 1024 * 1024

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class _TokenNeededForIntrospection(ValidationRule):
    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value in INTROSPECTION_FIELDS:
            self.report_error(
                GraphQLError(
                    "Introspection needs an API token (or RENDERTRACK_PUBLIC_INTROSPECTION=1).",
                    node,
                    extensions={"code": "UNAUTHENTICATED"},
                )
            )


class GuardIntrospection(SchemaExtension):
    """Without a token, introspection is refused unless the server makes it public."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        if getattr(context, "user", None) is None and not getattr(
            context, "public_introspection", False
        ):
            self.execution_context.validation_rules = (
                *self.execution_context.validation_rules,
                _TokenNeededForIntrospection,
            )
        yield


def request_limits() -> list[Any]:
    return [
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
    ]
