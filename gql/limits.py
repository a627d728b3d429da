"""What a single request may ask for, and who may read the schema.

Reading the schema is introspection, and also what the errors of a malformed request tell:
graphql-core's "Did you mean 'jobs' or 'job'?" suggestions, and the names of the types, fields
and arguments around the mistake ("... on type 'Query'", "... in 'JobStatus' enum"). All of it
needs an API token unless the server makes introspection public
(RENDERTRACK_PUBLIC_INTROSPECTION=1). A caller who may not read the schema is told where its
request is wrong and the names it wrote itself, nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    NameNode,
    ValidationRule,
    Visitor,
    specified_directives,
    specified_scalar_types,
    validate,
    visit,
)
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

MAX_DEPTH = 10
MAX_TOKENS = 2000
MAX_ALIASES = 20
MAX_BODY_BYTES = 1024 * 1024

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})

# The rules Strawberry appends to every validation (strawberry.schema.schema.validate_document),
# which takes no `hide_suggestions`; HideSchemaHints runs the same set with it.
STRAWBERRY_RULES = (MaybeNullValidationRule, OneOfInputValidationRule)


# What stands for a name of the schema the caller did not write, in a message for a caller who
# may not read the schema.
HIDDEN_NAME = "<hidden>"


def may_read_schema(context: object) -> bool:
    """A caller with a valid token, or anyone when introspection is public."""
    return getattr(context, "user", None) is not None or bool(
        getattr(context, "public_introspection", False)
    )


# graphql-core quotes every schema element it names: 'Job', '[JobStatus!]!', 'Query.jobs',
# 'Query.job(id:)', 'JobStatus.QUEUED'. Only the opening quote is consumed, so a quote inside a
# value the client sent cannot pair with it and shift the matching.
_NAME = r"[_A-Za-z][_0-9A-Za-z]*"
_SCHEMA_REFERENCE = re.compile(rf"'(\[*{_NAME}(?:\.{_NAME}(?:\({_NAME}:\))?)?[!\]]*)(?=')")
_NAMES = re.compile(_NAME)


@cache
def schema_names(schema: GraphQLSchema) -> frozenset[str]:
    """The names this schema defines beyond the GraphQL specification's own: types, fields,
    arguments, input fields, enum values, directives."""
    names: set[str] = set()
    for name, named in schema.type_map.items():
        if name.startswith("__") or name in specified_scalar_types:
            continue
        names.add(name)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in named.fields.items():
                names.add(field_name)
                names.update(field.args)
        elif isinstance(named, GraphQLInputObjectType):
            names.update(named.fields)
        elif isinstance(named, GraphQLEnumType):
            names.update(named.values)
    for directive in schema.directives:
        if directive not in specified_directives:
            names.add(directive.name)
            names.update(directive.args)
    return frozenset(names)


class _WrittenNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_name(self, node: NameNode, *_args: Any) -> None:
        self.names.add(node.value)


def written_names(document: DocumentNode, variables: object = None) -> set[str]:
    """Every name the request spells out: in its document, and in the keys and strings of its
    variables."""
    visitor = _WrittenNames()
    visit(document, visitor)
    pending = [variables]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            visitor.names.update(_NAMES.findall(value))
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return visitor.names


def without_schema_names(
    errors: Iterable[GraphQLError],
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: object = None,
) -> list[GraphQLError]:
    """The errors, each schema element their messages name replaced by HIDDEN_NAME unless the
    request spells out every name in it (a type, a field, an argument)."""
    unwritten = schema_names(schema) - written_names(document, variables)

    def mask(reference: re.Match[str]) -> str:
        hidden = any(name in unwritten for name in _NAMES.findall(reference.group(1)))
        return "'" + (HIDDEN_NAME if hidden else reference.group(1))

    masked = []
    for error in errors:
        message = _SCHEMA_REFERENCE.sub(mask, error.message)
        if message != error.message:
            error = GraphQLError(
                message,
                error.nodes,
                error.source,
                error.positions,
                error.path,
                error.original_error,
                error.extensions,
            )
        masked.append(error)
    return masked


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
        if not may_read_schema(self.execution_context.context):
            self.execution_context.validation_rules = (
                *self.execution_context.validation_rules,
                _TokenNeededForIntrospection,
            )
        yield


class HideSchemaHints(SchemaExtension):
    """Validation that tells a caller who may not read the schema nothing about it.

    graphql-core words a misspelled field, argument, type, enum value or input field as
    "... Did you mean 'jobs'?", which hands out the schema that GuardIntrospection keeps. Its
    `validate(hide_suggestions=True)` leaves the suggestions out; Strawberry calls `validate`
    without it, but skips its own validation when an extension has already filled
    `pre_execution_errors` (as its ValidationCache does), so this runs the same rules with it,
    then masks the schema names the caller did not write (`without_schema_names`).
    Callers who may read the schema keep Strawberry's own validation, suggestions and all.
    """

    def on_validate(self) -> Iterator[None]:
        execution_context = self.execution_context
        if (
            not may_read_schema(execution_context.context)
            and execution_context.validation_rules
            and execution_context.pre_execution_errors is None
            and execution_context.graphql_document is not None
        ):
            schema = execution_context.schema._schema
            document = execution_context.graphql_document
            errors = validate(
                schema,
                document,
                (*execution_context.validation_rules, *STRAWBERRY_RULES),
                hide_suggestions=True,
            )
            execution_context.pre_execution_errors = without_schema_names(errors, schema, document)
        yield


class SchemaHintsExecutor(StrawberryGraphQLCoreExecutionContext):
    """Variables are coerced after validation, when the executor is built: a misspelled enum
    value or input field in them tells a caller who may not read the schema no more than
    validation does (no suggestions, no names it did not write)."""

    @classmethod
    def build(  # type: ignore[override]
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        *args: Any,
        hide_suggestions: bool = False,
        **kwargs: Any,
    ) -> Any:
        hidden = not may_read_schema(context_value)
        executor = super().build(
            schema,
            document,
            root_value,
            context_value,
            raw_variable_values,
            *args,
            hide_suggestions=hide_suggestions or hidden,
            **kwargs,
        )
        if hidden and isinstance(executor, list):  # the request's errors, not an executor
            return without_schema_names(executor, schema, document, raw_variable_values)
        return executor


def request_limits() -> list[Any]:
    return [
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
    ]
