"""A budget per request: a query's cost is estimated from its text and one over the limit is
refused, coded and explained, before any job is read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from graphql import parse

from app.factory import create_app
from app.settings import Settings
from gql.cost import CONFIG_WEIGHT, DEFAULT_MAX_COST, LOG_LINE_WEIGHT, LOG_WEIGHT, query_cost
from models import User
from service import users as user_service
from testkit.sql_log import SqlStatement, capture_sql
from tests.conftest import Account
from tests.factories import insert_job
from tests.graphql_client import GraphQLClient

NESTED = """
{ jobs(first: 100) { edges { node { queuePosition
    user { jobs(first: 100) { edges { node { queuePosition } } } } } } } }
"""
DASHBOARD = """
{ jobStats { total queued rendering }
  jobs(first: 50) { edges { node { id status progress queuePosition estimatedStartAt
    user { email } worker { name } } } } }
"""


def job_statements(seen: list[SqlStatement]) -> list[str]:
    """The statements that touch the jobs table."""
    return [statement.text for statement in seen if '"jobs"' in statement.text]


@pytest.fixture
def job_reads() -> Iterator[list[SqlStatement]]:
    with capture_sql() as seen:
        yield seen


def cost(query: str, variables: dict | None = None) -> int:
    return query_cost(parse(query), variables, None)


def test_the_estimate_multiplies_nested_pages_and_weighs_bulk_text() -> None:
    assert cost("{ me { id } }") == 2
    assert cost("{ jobs(first: 10) { edges { node { id } } } }") == 1 + 10 * (1 + 1 * 2)
    assert cost("{ jobs { edges { node { id } } } }") == 1 + 20 * 3  # the default page
    assert cost("{ jobs(first: 5000) { edges { node { id } } } }") == 1 + 100 * 3  # capped
    assert cost("query($n: Int) { queue(first: $n) { id } }", {"n": 7}) == 1 + 7
    whole, tail = cost("{ queue { logs } }"), cost("{ queue { logs(tail: 10) } }")
    assert whole == 1 + 20 * LOG_WEIGHT and tail == 1 + 20 * (1 + 10 * LOG_LINE_WEIGHT)
    # A page of render specs: 20 may hold 5 MiB of JSON (more once escaped).
    assert cost("{ queue { nexrenderConfig } }") == 1 + 20 * CONFIG_WEIGHT > DEFAULT_MAX_COST
    assert cost(NESTED) > DEFAULT_MAX_COST


def test_fragments_count_where_they_are_spread_and_cycles_end() -> None:
    spread = "{ queue(first: 3) { ...F } } fragment F on Job { id status }"
    inline = "{ queue(first: 3) { ... on Job { id status } } }"
    assert cost(spread) == cost(inline) == 1 + 3 * 2
    cyclic = "{ me { ...A } } fragment A on User { id ...B } fragment B on User { ...A }"
    assert cost(cyclic) >= 2  # returns: graphql's own validation refuses the cycle


async def test_the_nested_query_of_the_issue_is_refused_before_any_job_is_read(
    api: GraphQLClient, accounts: dict[str, Account], job_reads: list[SqlStatement]
) -> None:
    response = await api(NESTED, token=accounts["user"].token)
    assert response.codes == ["QUERY_TOO_COSTLY"]
    error = response.errors[0]
    assert error["extensions"]["limit"] == DEFAULT_MAX_COST
    assert error["extensions"]["cost"] == cost(NESTED)
    assert f"{cost(NESTED):,}" in error["message"] and f"{DEFAULT_MAX_COST:,}" in error["message"]
    assert response.data is None
    assert job_statements(job_reads) == []


async def test_aliases_add_up(api: GraphQLClient, accounts: dict[str, Account]) -> None:
    one = "jobs(first: 5) { edges { node { id logs } } }"
    assert cost("{ " + one + " }") < DEFAULT_MAX_COST
    many = "{ " + " ".join(f"a{i}: {one}" for i in range(5)) + " }"
    response = await api(many, token=accounts["user"].token)
    assert response.codes == ["QUERY_TOO_COSTLY"]


async def test_a_dashboard_query_fits(api: GraphQLClient, accounts: dict[str, Account]) -> None:
    response = await api(DASHBOARD, token=accounts["admin"].token)
    assert not response.errors, response.errors


async def test_a_page_size_in_a_variable_counts(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    query = "query($n: Int) { jobs(first: $n) { edges { node { id logs } } } }"
    small = await api(query, {"n": 5}, accounts["user"].token)
    assert not small.errors, small.errors
    large = await api(query, {"n": 100}, accounts["user"].token)
    assert large.codes == ["QUERY_TOO_COSTLY"]
    # A default counts as sent: it is what the query runs with.
    defaulted = "query($n: Int = 100) { jobs(first: $n) { edges { node { id logs } } } }"
    assert (await api(defaulted, {}, accounts["user"].token)).codes == ["QUERY_TOO_COSTLY"]
    assert not (await api(defaulted, {"n": 5}, accounts["user"].token)).errors


def test_a_history_page_counts_like_any_list() -> None:
    history = "query($n: Int = 50) { job(id: 1) { events(first: $n) { edges { node { id } } } } }"
    assert cost(history) == 1 + 1 + 50 * (1 + 1 * 2)
    assert cost(history, {"n": 3}) == 1 + 1 + 3 * (1 + 1 * 2)


@pytest.fixture
async def strict_api(db: str) -> AsyncIterator[GraphQLClient]:
    app = create_app(Settings(database_url=db, max_query_cost=10), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rendertrack.test") as http:
        yield GraphQLClient(http)


async def test_the_limit_is_the_servers_setting(
    strict_api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    assert not (await strict_api("{ me { id } }", token=accounts["user"].token)).errors
    refused = await strict_api("{ queue(first: 10) { id } }", token=accounts["user"].token)
    assert refused.codes == ["QUERY_TOO_COSTLY"]
    assert refused.errors[0]["extensions"]["limit"] == 10


NESTED_USERS = """
{ users { id jobs(first: 3) { totalCount pageInfo { hasNextPage endCursor }
    edges { node { id queuePosition user { id } } } } } }
"""


async def statements_of(api: GraphQLClient, query: str, token: str) -> tuple[int, dict]:
    with capture_sql() as seen:
        response = await api(query, token=token)
    assert not response.errors, response.errors
    return len(seen), response.data


async def add_users_with_jobs(count: int, jobs_each: int) -> None:
    for index in range(count):
        created = (await user_service.create_user(f"u{index}-{count}@example.com", None)).user
        owner = await User.get(id=created.id)
        for _ in range(jobs_each):
            await insert_job(owner, status="QUEUED")


async def test_nested_lists_cost_statements_by_depth_not_by_rows(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    admin = accounts["admin"].token
    await add_users_with_jobs(2, 4)
    few, _ = await statements_of(api, NESTED_USERS, admin)
    await add_users_with_jobs(20, 4)
    many, data = await statements_of(api, NESTED_USERS, admin)
    assert many == few, (few, many)

    # And each user's page is the one a query of that user alone answers.
    for user in data["users"]:
        alone = await api(
            """query($id: ID!) { jobs(first: 3, filter: {userId: $id}) { totalCount
                 pageInfo { hasNextPage endCursor } edges { node { id } } } }""",
            {"id": user["id"]},
            admin,
        )
        expected = alone.data["jobs"]
        nested = user["jobs"]
        assert [e["node"]["id"] for e in nested["edges"]] == [
            e["node"]["id"] for e in expected["edges"]
        ]
        assert nested["totalCount"] == expected["totalCount"]
        assert nested["pageInfo"] == expected["pageInfo"]
        assert all(e["node"]["user"]["id"] == user["id"] for e in nested["edges"])
