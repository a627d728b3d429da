"""The schema served at /graphql and exported to schema.graphql (`make schema`)."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types.execution import ExecutionContext

from gql.errors import ErrorCodes, log_unexpected, translate
from gql.fanout import FanOutExecutor
from gql.limits import RequestChecks
from gql.mutations import Mutation
from gql.queries import Query
from gql.subscriptions import Subscription


class RendertrackSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected(errors, execution_context)

    async def _handle_execution_result(self, context: ExecutionContext, *args: Any, **kwargs: Any):  # noqa: ANN202
        """Every result, over HTTP or a websocket, leaves with coded, client-safe errors: the
        websocket transports run queries and mutations through `stream`, where the ErrorCodes
        extension's hook does not see the result. (Strawberry's internal hook; translating twice
        changes nothing.)"""
        result = await super()._handle_execution_result(context, *args, **kwargs)
        if getattr(result, "errors", None):
            result.errors = [translate(error) for error in result.errors]
        return result


def build_schema() -> RendertrackSchema:
    extensions: list[Any] = [RequestChecks, ErrorCodes]
    return RendertrackSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=FanOutExecutor,
        config=StrawberryConfig(auto_camel_case=True),
    )


schema = build_schema()
