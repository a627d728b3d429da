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
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from graphql import (
    BREAK,
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
    parse,
    specified_directives,
    specified_scalar_types,
    validate,
    visit,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from gql.cost import budget_errors, budget_rule

MAX_DEPTH = 10
MAX_TOKENS = 2000
MAX_ALIASES = 20
MAX_BODY_BYTES = 1024 * 1024
# Parsed documents (and their verdicts under the static rules) kept per process, by text; a text
# longer than this is parsed every time.
DOCUMENT_CACHE_SIZE = 256
CACHED_TEXT_CHARS = 16 * 1024

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})

# The rules Strawberry appends to every validation (strawberry.schema.schema.validate_document),
# which takes no `hide_suggestions`; HideSchemaHints runs the same set with it.
STRAWBERRY_RULES = (MaybeNullValidationRule, OneOfInputValidationRule)
# The depth and alias limits: rules of the document alone.
STATIC_LIMIT_RULES = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
)


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


class RequestChecks(SchemaExtension):
    """Parsing and validation of every operation (HTTP and websockets), with what does not
    change between requests remembered per document text.

    The static checks (graphql-core's specified rules, Strawberry's own, the depth and alias
    limits) depend on the document alone: a document that passed them once passes them again,
    so their verdict is kept, with the parsed document, in a bounded LRU (`DOCUMENTS`). A parse
    is kept only when it succeeded within MAX_TOKENS, so a document over the token limit is
    parsed, and refused, every time. The checks that depend on the request run on every
    request: the cost budget (variables, operation name, the server's limit), introspection
    without a token (GuardIntrospection's rule), and the hiding of schema hints from a caller
    who may not read the schema (HideSchemaHints). A document that fails a static rule is
    validated in full, every time, exactly as before.

    GuardIntrospection: without a token, introspection is refused unless the server makes it
    public.

    HideSchemaHints: graphql-core words a misspelled field, argument, type, enum value or input
    field as "... Did you mean 'jobs'?", which hands out the schema that GuardIntrospection
    keeps. For a caller who may not read the schema, validation runs with
    `hide_suggestions=True` (which leaves the suggestions out), then masks the schema names the
    caller did not write (`without_schema_names`). Callers who may read the schema keep the
    suggestions.
    """

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = MAX_TOKENS
        yield

    def on_parse(self) -> Iterator[None]:
        execution_context = self.execution_context
        query = execution_context.query
        if execution_context.graphql_document is None and query:
            entry = DOCUMENTS.get(query)
            if entry is not None:
                execution_context.graphql_document = entry.document
        yield
        document = execution_context.graphql_document
        if query and document is not None and DOCUMENTS.get(query) is None:
            DOCUMENTS.put(query, document)

    def on_validate(self) -> Iterator[None]:
        execution_context = self.execution_context
        document = execution_context.graphql_document
        if (
            execution_context.validation_rules
            and execution_context.pre_execution_errors is None
            and document is not None
        ):
            execution_context.pre_execution_errors = self._errors(document)
        yield

    def _errors(self, document: DocumentNode) -> list[GraphQLError]:
        execution_context = self.execution_context
        context = execution_context.context
        hidden = not may_read_schema(context)
        schema = execution_context.schema._schema
        base = tuple(execution_context.validation_rules)
        entry = DOCUMENTS.entry_of(execution_context.query, document)
        if not entry.passes(base):
            static = (*base, *STATIC_LIMIT_RULES, *STRAWBERRY_RULES)
            if validate(schema, document, static):
                return self._validated_in_full(document, base, hidden)
            entry.passed(base)
        if hidden and entry.introspects:
            return self._validated_in_full(document, base, hidden)
        errors = budget_errors(
            document,
            execution_context.variables,
            execution_context.operation_name,
            getattr(context, "max_query_cost", None),
        )
        if errors and hidden:
            return without_schema_names(errors, schema, document)
        return errors

    def _validated_in_full(
        self, document: DocumentNode, base: tuple[Any, ...], hidden: bool
    ) -> list[GraphQLError]:
        """Every rule at once, per-request ones included, as one graphql-core validation."""
        execution_context = self.execution_context
        context = execution_context.context
        schema = execution_context.schema._schema
        rules = (
            *base,
            *((_TokenNeededForIntrospection,) if hidden else ()),
            *STATIC_LIMIT_RULES,
            budget_rule(
                execution_context.variables,
                execution_context.operation_name,
                getattr(context, "max_query_cost", None),
            ),
            *STRAWBERRY_RULES,
        )
        errors = validate(schema, document, rules, hide_suggestions=hidden)
        return without_schema_names(errors, schema, document) if hidden else errors


def _introspects(document: DocumentNode) -> bool:
    found = False

    class _Finder(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> Any:
            nonlocal found
            if node.name.value in INTROSPECTION_FIELDS:
                found = True
                return BREAK
            return None

    visit(document, _Finder())
    return found


class _Document:
    """A parsed document and what is known of it: whether it uses introspection, and the
    rule sets it passed."""

    __slots__ = ("_passed", "document", "introspects")

    def __init__(self, document: DocumentNode) -> None:
        self.document = document
        self.introspects = _introspects(document)
        self._passed: tuple[Any, ...] | None = None

    def passes(self, rules: tuple[Any, ...]) -> bool:
        return self._passed is not None and self._passed == rules

    def passed(self, rules: tuple[Any, ...]) -> None:
        self._passed = rules


class DocumentCache:
    """Parsed documents by their text, least recently used dropped past `size`. Texts longer
    than `max_chars` are not kept (a document within MAX_TOKENS may still carry long strings
    and comments)."""

    def __init__(self, size: int = DOCUMENT_CACHE_SIZE, max_chars: int = CACHED_TEXT_CHARS) -> None:
        self.size = size
        self.max_chars = max_chars
        self._entries: OrderedDict[str, _Document] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str) -> _Document | None:
        entry = self._entries.get(text)
        if entry is not None:
            self._entries.move_to_end(text)
        return entry

    def put(self, text: str, document: DocumentNode) -> _Document:
        entry = _Document(document)
        if len(text) <= self.max_chars:
            self._entries[text] = entry
            self._entries.move_to_end(text)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry

    def entry_of(self, text: str | None, document: DocumentNode) -> _Document:
        """The entry of this document (a new one, not kept, for a document given parsed)."""
        entry = self.get(text) if text else None
        if entry is not None and entry.document is document:
            return entry
        return _Document(document) if not text else self.put(text, document)

    def parse(self, text: str) -> DocumentNode:
        """The document of `text`, parsed within MAX_TOKENS (GraphQLError if it does not
        parse), from the cache when it was parsed before."""
        entry = self.get(text)
        if entry is not None:
            return entry.document
        document = parse(text, max_tokens=MAX_TOKENS)
        self.put(text, document)
        return document

    def clear(self) -> None:
        self._entries.clear()


DOCUMENTS = DocumentCache()


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
