"""The schema served at /graphql and exported to schema.graphql (`make schema`)."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types.execution import ExecutionContext

from gql.cost import QueryCostLimit
from gql.errors import ErrorCodes, log_unexpected
from gql.limits import GuardIntrospection, HideSchemaHints, SchemaHintsExecutor, request_limits
from gql.mutations import Mutation
from gql.queries import Query
from gql.subscriptions import Subscription


class RendertrackSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected(errors, execution_context)


def build_schema() -> RendertrackSchema:
    extensions: list[Any] = [
        GuardIntrospection,
        HideSchemaHints,
        *request_limits(),
        QueryCostLimit,
        ErrorCodes,
    ]
    return RendertrackSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=SchemaHintsExecutor,
        config=StrawberryConfig(auto_camel_case=True),
    )


schema = build_schema()
