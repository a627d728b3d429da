"""A budget per request: what a query may cost, estimated from its text before anything runs.

The estimate counts the nodes a query can return: every field is one, a list multiplies what is
under it by the page it asks for (`first`/`last`, else the default page), and the fields that
carry bulk text count one node per KiB they may hold (`logs`: a job's log may hold 256 KiB by
default, a line 4 KiB; `nexrenderConfig`: up to 256 KiB of JSON). A query over the budget is
refused with QUERY_TOO_COSTLY naming its cost and the limit, before any statement runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
)

from gql.defaults import DEFAULT_MAX_COST
from service.queries import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# Lists and how many items they may hold when the query does not say.
PAGED_FIELDS = frozenset({"jobs", "queue", "events"})
# Unpaged lists: an admin's list of every account and of every worker, and the jobs one worker
# renders at once.
LIST_ESTIMATES = {"users": MAX_PAGE_SIZE, "workers": MAX_PAGE_SIZE, "heldJobs": 4}
# Fields whose value is bulk text count one node per KiB they may hold: a whole log up to
# 256 KiB by default, a log line up to 4 KiB, a render spec up to 256 KiB of JSON (and more once
# escaped in the response). Five thousand nodes then bound a response to a few MiB of them.
LOG_WEIGHT = 256
LOG_LINE_WEIGHT = 4
CONFIG_WEIGHT = 256


def query_cost(
    document: DocumentNode, variables: Mapping[str, Any] | None, operation_name: str | None
) -> int:
    """The estimated cost of the operation a request runs (the costliest one, if it names
    none)."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    costs = [
        _selection_cost(
            operation.selection_set, fragments, _with_defaults(operation, variables), frozenset()
        )
        for operation in document.definitions
        if isinstance(operation, OperationDefinitionNode)
        and (operation_name is None or (operation.name and operation.name.value == operation_name))
    ]
    return max(costs, default=0)


def _with_defaults(
    operation: OperationDefinitionNode, variables: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """The variables as the operation runs with them: those it was sent, else their defaults."""
    given = dict(variables or {})
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if given.get(name) is None and isinstance(definition.default_value, IntValueNode):
            given[name] = int(definition.default_value.value)
    return given


def _selection_cost(
    selections: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    visiting: frozenset[str],
) -> int:
    if selections is None:
        return 0
    total = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            total += _field_cost(selection, fragments, variables, visiting)
        elif isinstance(selection, InlineFragmentNode):
            total += _selection_cost(selection.selection_set, fragments, variables, visiting)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in visiting:  # cycles: validation refuses them
                total += _selection_cost(
                    fragment.selection_set, fragments, variables, visiting | {name}
                )
    return total


def _field_cost(
    field: FieldNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    visiting: frozenset[str],
) -> int:
    name = field.name.value
    arguments = dict(_arguments(field, variables))
    if name == "logs":
        tail = arguments.get("tail")
        if isinstance(tail, int) and tail >= 0:
            return 1 + min(LOG_WEIGHT, tail * LOG_LINE_WEIGHT)
        return LOG_WEIGHT
    if name == "nexrenderConfig":
        return CONFIG_WEIGHT
    below = _selection_cost(field.selection_set, fragments, variables, visiting)
    return 1 + _items(name, arguments) * below


def _items(name: str, arguments: Mapping[str, Any]) -> int:
    if name in PAGED_FIELDS:
        asked = [arguments.get("first"), arguments.get("last")]
        sizes = [size for size in asked if isinstance(size, int) and size >= 0]
        return min(max(sizes), MAX_PAGE_SIZE) if sizes else DEFAULT_PAGE_SIZE
    return LIST_ESTIMATES.get(name, 1)


def _arguments(field: FieldNode, variables: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for argument in field.arguments or ():
        value = argument.value
        if isinstance(value, IntValueNode):
            yield argument.name.value, int(value.value)
        elif isinstance(value, VariableNode):
            yield argument.name.value, variables.get(value.name.value)


def budget_errors(
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    limit: int | None,
) -> list[GraphQLError]:
    """QUERY_TOO_COSTLY when the operation's estimated cost is over `limit` (the context's
    `max_query_cost`: RENDERTRACK_MAX_QUERY_COST; None: DEFAULT_MAX_COST), else nothing. Runs
    on every request, the parse and the static validation of a document being cached
    (gql/limits.py RequestChecks): the cost depends on the variables."""
    limit = DEFAULT_MAX_COST if limit is None else limit
    cost = query_cost(document, variables, operation_name)
    if cost <= limit:
        return []
    return [
        GraphQLError(
            f"This query could return about {cost:,} nodes; the limit is "
            f"{limit:,}. Ask for smaller pages (first/last), fewer nested "
            "lists, or logs with a tail.",
            document,
            extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": limit},
        )
    ]


def budget_rule(
    variables: Mapping[str, Any] | None, operation_name: str | None, limit: int | None
) -> type[ValidationRule]:
    """budget_errors as a validation rule, for a document validated with every rule at once."""

    class _Budget(ValidationRule):
        def enter_document(self, node: DocumentNode, *_args: Any) -> None:
            for error in budget_errors(node, variables, operation_name, limit):
                self.report_error(error)

    return _Budget
