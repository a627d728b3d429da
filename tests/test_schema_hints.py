"""A caller who may not introspect learns nothing about the schema from the errors of a malformed
request: no "Did you mean ...?" suggestions, and no name of a type, field, argument, enum value
or input field that the request did not spell out itself (issue 9)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from graphql import parse, specified_scalar_types

from app.factory import create_app
from app.settings import Settings
from gql.limits import STRAWBERRY_RULES
from gql.schema import schema
from tests.conftest import Account
from tests.graphql_client import GraphQLClient, GraphQLResponse

NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
BAD_TOKEN = "rt_" + "0" * 43
VALIDATION = "GRAPHQL_VALIDATION_FAILED"
# A variable's value is coerced after validation; a bad one is the caller's input.
VARIABLE = "BAD_USER_INPUT"

# (query, variables, code, a suggestion graphql-core makes to a caller who may read the schema)
MISSPELLINGS = {
    "field": ("{ jbs }", None, VALIDATION, "Did you mean 'jobs' or 'job'?"),
    "nested field": ("{ me { emial } }", None, VALIDATION, "Did you mean 'email'?"),
    "mutation field": ("mutation { submitJb }", None, VALIDATION, "Did you mean 'submitJob'?"),
    "argument": (
        "{ jobs(fliter: {}) { totalCount } }",
        None,
        VALIDATION,
        "Did you mean 'filter'",
    ),
    "type of a variable": (
        "query($x: JobStatu) { jobs(filter: {status: [$x]}) { totalCount } }",
        None,
        VALIDATION,
        "'JobStatus'",
    ),
    "type of a fragment": (
        "{ ...F } fragment F on Qury { me { id } }",
        None,
        VALIDATION,
        "Did you mean 'Query'?",
    ),
    "type of an inline fragment": (
        "{ ... on Qery { me { id } } }",
        None,
        VALIDATION,
        "Did you mean 'Query'?",
    ),
    "enum value": (
        "{ jobs(filter: {status: [QUEUD]}) { totalCount } }",
        None,
        VALIDATION,
        "Did you mean the enum value 'QUEUED'?",
    ),
    "enum value of an argument": (
        "{ jobs(orderBy: NEWST_FIRST) { totalCount } }",
        None,
        VALIDATION,
        "Did you mean the enum value 'NEWEST_FIRST'",
    ),
    "input field": (
        "{ jobs(filter: {staus: [QUEUED]}) { totalCount } }",
        None,
        VALIDATION,
        "Did you mean 'status'?",
    ),
    "input field of a mutation": (
        'mutation { submitJob(input: {projectNme: "P"}) { id } }',
        None,
        VALIDATION,
        "Did you mean 'projectName'?",
    ),
    "enum value in a variable": (
        "query($f: JobFilter) { jobs(filter: $f) { totalCount } }",
        {"f": {"status": ["QUEUD"]}},
        VARIABLE,
        "Did you mean the enum value 'QUEUED'?",
    ),
    "enum variable": (
        "query($o: JobOrder) { jobs(orderBy: $o) { totalCount } }",
        {"o": "NEWST_FIRST"},
        VARIABLE,
        "Did you mean the enum value 'NEWEST_FIRST'",
    ),
    "input field in a variable": (
        "query($f: JobFilter) { jobs(filter: $f) { totalCount } }",
        {"f": {"staus": ["QUEUED"]}},
        VARIABLE,
        "Did you mean 'status'?",
    ),
}

# Not misspellings, but their messages name the schema around the mistake just the same.
OTHER_MISTAKES = {
    "missing argument": ("{ job { id } }", "'Query.job(id:)'"),
    "missing subfields": ("{ jobs }", "'JobConnection!'"),
    "variable in the wrong place": (
        "query($x: Int) { jobs(orderBy: $x) { totalCount } }",
        "'JobOrder'",
    ),
}


def schema_names() -> set[str]:
    """Every name the schema defines beyond the GraphQL specification's own."""
    names: set[str] = set()
    for name, named in schema._schema.type_map.items():
        if name.startswith("__") or name in specified_scalar_types:
            continue
        names.add(name)
        for member_name, member in (getattr(named, "fields", None) or {}).items():
            names.add(member_name)
            names.update(getattr(member, "args", None) or {})
        names.update(getattr(named, "values", None) or {})
    return names


SCHEMA_NAMES = schema_names()
# Words of graphql-core's own sentences that happen to be names in this schema too.
PROSE = {"at"}


def unwritten_names(message: str, query: str, variables: dict[str, Any] | None) -> set[str]:
    written = set(NAME.findall(query + json.dumps(variables or {})))
    return (set(NAME.findall(message)) & SCHEMA_NAMES) - written - PROSE


def assert_tells_nothing(
    response: GraphQLResponse, query: str, variables: dict[str, Any] | None, code: str
) -> None:
    assert response.status == 200
    assert response.errors, response.body
    assert set(response.codes) == {code}, response.body
    for error in response.errors:
        texts = [error["message"]]
        texts += [item["message"] for item in error["extensions"].get("fields", [])]
        for text in texts:
            assert "Did you mean" not in text, text
            assert not unwritten_names(text, query, variables), text


@pytest.mark.parametrize("case", MISSPELLINGS, ids=list(MISSPELLINGS))
async def test_a_misspelling_gets_no_hint_without_a_valid_token(
    api: GraphQLClient, accounts: dict[str, Account], case: str
) -> None:
    query, variables, code, suggestion = MISSPELLINGS[case]
    anonymous = await api(query, variables)
    assert_tells_nothing(anonymous, query, variables, code)
    assert_tells_nothing(await api(query, variables, BAD_TOKEN), query, variables, code)

    # The errors are the same ones, where they were, only worded without the schema.
    known = await api(query, variables, accounts["user"].token)
    assert known.codes == anonymous.codes
    locations = [error.get("locations") for error in known.errors]
    assert [error.get("locations") for error in anonymous.errors] == locations
    # A caller with a token may introspect anyway: graphql-core's suggestions are kept.
    assert any(suggestion in error["message"] for error in known.errors), known.body


@pytest.mark.parametrize("case", OTHER_MISTAKES, ids=list(OTHER_MISTAKES))
async def test_other_mistakes_name_no_part_of_the_schema_the_request_did_not(
    api: GraphQLClient, accounts: dict[str, Account], case: str
) -> None:
    query, named = OTHER_MISTAKES[case]
    anonymous = await api(query)
    for error in anonymous.errors:
        assert not unwritten_names(error["message"], query, None), error
    assert anonymous.errors and named not in str(anonymous.body)
    known = await api(query, token=accounts["user"].token)
    assert named in str(known.body)


async def test_the_message_keeps_what_the_caller_wrote(api: GraphQLClient) -> None:
    response = await api("{ jbs }")
    assert response.errors[0]["message"] == "Cannot query field 'jbs' on type '<hidden>'."
    assert response.errors[0]["locations"] == [{"line": 1, "column": 3}]
    # A name the request spells out is no secret: here the type of the fragment.
    query = "fragment F on Query { jobs(fliter: 1) { totalCount } } { ...F }"
    message = (await api(query)).errors[0]["message"]
    assert message == "Unknown argument 'fliter' on field 'Query.jobs'."


@pytest.mark.parametrize("value", ["it's", "'", "x' 'JobStat", "QUEUD'"])
async def test_a_quote_in_the_callers_value_unmasks_nothing(api: GraphQLClient, value: str) -> None:
    query = "query($f: JobFilter) { jobs(filter: $f) { totalCount } }"
    variables = {"f": {"status": [value]}}
    assert_tells_nothing(await api(query, variables), query, variables, VARIABLE)


def test_validation_without_hints_runs_the_rules_strawberry_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HideSchemaHints calls graphql-core's `validate` itself, with the rules Strawberry adds to
    every validation: an upgrade of Strawberry that adds one must add it there too."""
    import strawberry.schema.schema as strawberry_schema

    seen: list[tuple[Any, ...]] = []

    def spy(_schema: Any, _document: Any, rules: Any, *_args: Any, **_kwargs: Any) -> list:
        seen.append(tuple(rules))
        return []

    monkeypatch.setattr(strawberry_schema, "validate", spy)
    strawberry_schema.validate_document(schema._schema, parse("{ me { id } }"), ())
    assert seen == [STRAWBERRY_RULES]


async def test_a_get_request_gets_no_hint_either(api: GraphQLClient) -> None:
    response = await api.http.get(
        "/graphql", params={"query": "{ jbs }"}, headers={"Accept": "application/json"}
    )
    body = GraphQLResponse(response.status_code, response.json())
    assert_tells_nothing(body, "{ jbs }", None, VALIDATION)


@pytest_asyncio.fixture
async def public_api(db: str) -> AsyncIterator[GraphQLClient]:
    """The app with RENDERTRACK_PUBLIC_INTROSPECTION=1."""
    app = create_app(Settings(database_url=db, public_introspection=True), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as http:
        yield GraphQLClient(http)


async def test_with_public_introspection_everyone_gets_the_suggestions(
    public_api: GraphQLClient,
) -> None:
    """Anyone may read the whole schema then, so hiding its names from errors would protect
    nothing: graphql-core's messages are left as they are."""
    schema_query = "{ __schema { queryType { name } } }"
    assert (await public_api(schema_query)).data["__schema"]["queryType"]["name"] == "Query"
    for query, variables, code, suggestion in MISSPELLINGS.values():
        for token in (None, BAD_TOKEN):
            response = await public_api(query, variables, token)
            assert set(response.codes) == {code}, response.body
            assert any(suggestion in error["message"] for error in response.errors), response.body
    message = (await public_api("{ jbs }")).errors[0]["message"]
    assert message == "Cannot query field 'jbs' on type 'Query'. Did you mean 'jobs' or 'job'?"
