"""What a request no longer does again (a parsed and validated document is kept per text; a
token found on PostgreSQL is remembered), and that every rule still holds with it: the per-request
checks run on every request, and a revoked token is refused at once, in every process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from app.factory import create_app
from app.settings import Settings
from gql.limits import DOCUMENTS, MAX_TOKENS
from service import users
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer, serve
from tests.test_cli import rendertrack

ME = "{ me { id } }"
# Two nested pages: within the budget at 5 x 5, over it at 100 x 100.
NESTED = (
    "query($n: Int) { jobs(first: $n) { edges { node { id"
    " user { jobs(first: $n) { edges { node { id queuePosition } } } } } } } }"
)
INTROSPECTION = "{ __schema { queryType { name } } }"
ROTATE = "mutation($id: ID!) { rotateToken(userId: $id) { token } }"


def codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


async def test_a_cached_document_still_refuses_an_over_budget_variant(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    token = accounts["admin"].token
    for _ in range(2):  # the second time, the document is parsed and validated already
        small = await api(NESTED, {"n": 5}, token=token)
        assert small.status == 200 and not small.body.get("errors"), small.body
        assert DOCUMENTS.get(NESTED) is not None
        big = await api(NESTED, {"n": 100}, token=token)
        assert codes(big.body) == ["QUERY_TOO_COSTLY"], big.body
        assert big.body["data"] is None


async def test_a_cached_document_still_needs_a_token_for_introspection(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    for _ in range(2):
        allowed = await api(INTROSPECTION, token=accounts["user"].token)
        assert allowed.body["data"]["__schema"]["queryType"]["name"] == "Query"
        refused = await api(INTROSPECTION)
        assert codes(refused.body) == ["UNAUTHENTICATED"], refused.body


async def test_an_invalid_document_is_refused_every_time_with_or_without_hints(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    query = "{ jbos { totalCount } }"
    for _ in range(2):
        hinted = await api(query, token=accounts["user"].token)
        assert codes(hinted.body) == ["GRAPHQL_VALIDATION_FAILED"]
        assert "Did you mean" in hinted.body["errors"][0]["message"]
        hidden = await api(query)
        assert codes(hidden.body) == ["GRAPHQL_VALIDATION_FAILED"]
        assert "Did you mean" not in hidden.body["errors"][0]["message"]


async def test_a_document_over_the_token_limit_is_refused_every_time(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    query = "{ " + " ".join(f"a{n}: me {{ id }}" for n in range(MAX_TOKENS // 4)) + " }"
    for _ in range(2):
        answer = await api(query, token=accounts["user"].token)
        assert codes(answer.body) == ["GRAPHQL_VALIDATION_FAILED"], answer.body
        assert "token" in answer.body["errors"][0]["message"].lower()
        assert DOCUMENTS.get(query) is None


def test_the_document_cache_is_bounded() -> None:
    cache = type(DOCUMENTS)(size=3)
    for n in range(5):
        cache.parse(f"{{ a{n}: me {{ id }} }}")
    assert len(cache) == 3
    assert cache.get("{ a0: me { id } }") is None
    assert cache.get("{ a4: me { id } }") is not None


async def test_the_token_cache_is_off_on_sqlite_and_without_a_listening_bus(
    db: str, accounts: dict[str, Account]
) -> None:
    """On SQLite nothing turns it on (the command line revokes from another process, with no
    notice); in this process tests turn it on by hand."""
    assert not users.tokens.enabled
    listening = True
    users.tokens.enable(lambda: listening)
    try:
        token = accounts["user"].token
        assert await users.authenticate(token) is not None
        assert users.tokens.get(users.hash_token(token)) is not None
        listening = False  # the bus lost its LISTEN connection: nothing is answered from memory
        assert users.tokens.get(users.hash_token(token)) is None
    finally:
        users.tokens.disable()


async def test_a_revocation_in_this_process_is_seen_at_once_with_the_cache_on(
    db: str, accounts: dict[str, Account]
) -> None:
    users.tokens.enable(lambda: True)
    try:
        account = accounts["user"]
        assert await users.authenticate(account.token) is not None
        assert await users.authenticate(account.token) is not None  # from the cache
        issued = await users.rotate_token(account.id)
        assert await users.authenticate(account.token) is None
        assert await users.authenticate(issued.token) is not None
        await users.deactivate_user(account.id)
        assert await users.authenticate(issued.token) is None
    finally:
        users.tokens.disable()


async def test_a_lookup_that_raced_a_revocation_is_not_remembered(
    db: str, accounts: dict[str, Account]
) -> None:
    users.tokens.enable(lambda: True)
    try:
        account = accounts["user"]
        digest = users.hash_token(account.token)
        generation = users.tokens.generation
        user = await users.User.get(token_hash=digest)  # read before the revocation...
        users.tokens.revoke(account.id)  # ...which lands before it is stored
        users.tokens.put(digest, user, generation)
        assert users.tokens.get(digest) is None
    finally:
        users.tokens.disable()


@pytest.mark.slow
async def test_a_revocation_from_another_process_is_refused_at_once_on_postgres(
    db: str, accounts: dict[str, Account], tmp_path: Path
) -> None:
    """Two server processes' worth of it: the token is remembered by this server (its bus
    LISTENs), `rendertrack users rotate-token` runs in another process, and the old token is
    refused by this server on the very next request."""
    if not db.startswith("postgres"):
        pytest.skip("the token cache is on only where revocations arrive by NOTIFY")
    account = accounts["user"]
    async with serve(create_app(Settings(database_url=db), manage_database=False)) as live:
        assert users.tokens.enabled
        async with httpx.AsyncClient(base_url=live.http_url, timeout=10) as client:
            api = GraphQLClient(client)
            for _ in range(3):
                answer = await api(ME, token=account.token)
                assert answer.body["data"]["me"]["id"] == account.id
            assert users.tokens.get(users.hash_token(account.token)) is not None
            finished = await asyncio.to_thread(
                rendertrack, "users", "rotate-token", "--email", account.email,
                database_url=db, cwd=tmp_path,
            )  # fmt: skip
            assert finished.returncode == 0, finished.stderr
            answer = await api(ME, token=account.token)
            assert codes(answer.body) == ["UNAUTHENTICATED"], answer.body
    assert not users.tokens.enabled


async def test_a_rotation_through_graphql_is_refused_at_once_by_the_live_server(
    live: LiveServer, accounts: dict[str, Account]
) -> None:
    account = accounts["user"]
    async with httpx.AsyncClient(base_url=live.http_url, timeout=10) as client:
        api = GraphQLClient(client)
        for _ in range(2):
            assert (await api(ME, token=account.token)).body["data"]["me"]["id"] == account.id
        rotated = await api(ROTATE, {"id": account.id}, token=accounts["admin"].token)
        assert rotated.body["data"]["rotateToken"]["token"], rotated.body
        answer = await api(ME, token=account.token)
        assert codes(answer.body) == ["UNAUTHENTICATED"], answer.body
