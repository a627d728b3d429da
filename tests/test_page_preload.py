"""A page of jobs reads its nodes' queue positions and owners for the whole page before the
nodes resolve (gql/preload.py): the answers must be exactly those each job gives on its own,
however the query asks for them (fragments, inline fragments, nested under a user)."""

from __future__ import annotations

from service import jobs
from testkit.sql_log import capture_sql
from tests.conftest import Account
from tests.factories import valid_submission
from tests.graphql_client import GraphQLClient

SINGLE = "query($id: ID!) { job(id: $id) { id queuePosition estimatedStartAt user { email } } }"
PAGES = {
    "fields": "{ jobs(first: 50) { edges { node { id queuePosition estimatedStartAt "
    "user { email } } } } }",
    "fragment": "fragment Row on Job { id queuePosition estimatedStartAt user { email } } "
    "{ jobs(first: 50) { edges { node { ...Row } } } }",
    "inline": "{ jobs(first: 50) { edges { ... on JobEdge { node { ... on Job { id "
    "queuePosition estimatedStartAt user { email } } } } } } }",
}


async def test_a_page_answers_what_each_job_answers_alone(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user, other, worker = accounts["user"], accounts["other"], accounts["worker"]
    for index in range(6):
        owner = user if index % 2 else other
        await jobs.submit_job(owner.actor, valid_submission(project_name=f"Shot {index}"))
    await jobs.claim_next(worker.actor)  # one RENDERING: no queue position
    admin = accounts["admin"].token

    for name, query in PAGES.items():
        page = await api(query, {}, admin)
        assert not page.errors, (name, page.errors)
        nodes = [edge["node"] for edge in page.data["jobs"]["edges"]]
        alone = [(await api(SINGLE, {"id": node["id"]}, admin)).data["job"] for node in nodes]
        assert nodes == alone, name
        assert sorted(node["queuePosition"] for node in nodes if node["queuePosition"]) == [
            1,
            2,
            3,
            4,
            5,
        ]
        assert {node["user"]["email"] for node in nodes} == {user.email, other.email}


async def test_a_page_reads_positions_and_owners_once_each(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    for index in range(12):
        await jobs.submit_job(accounts["user"].actor, valid_submission(project_name=f"S{index}"))
    with capture_sql() as statements:
        page = await api(PAGES["fragment"], {}, accounts["admin"].token)
    assert not page.errors
    owners = [sql for sql in statements if 'FROM "users" WHERE "id" IN' in sql.text]
    positions = [sql for sql in statements if "ROW_NUMBER" in sql.text]
    assert len(owners) == 1, [sql.one_line for sql in owners]
    assert len(positions) == 1, [sql.one_line for sql in positions]


async def test_owners_stay_hidden_from_workers_on_a_page(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    await jobs.submit_job(accounts["user"].actor, valid_submission())
    page = await api(PAGES["fields"], {}, accounts["worker"].token)
    assert not page.errors
    assert [edge["node"]["user"] for edge in page.data["jobs"]["edges"]] == [None]
