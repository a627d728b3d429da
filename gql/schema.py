"""The schema served at /graphql and exported to schema.graphql (`make schema`)."""

import strawberry
from strawberry.schema.config import StrawberryConfig


@strawberry.type
class Query:
    @strawberry.field(description="The version of the rendertrack API.")
    def api_version(self) -> str:
        return "0.1.0"


schema = strawberry.Schema(query=Query, config=StrawberryConfig(auto_camel_case=True))
