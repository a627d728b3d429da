"""/graphql follows the GraphQL-over-HTTP specification, its SHOULDs included (issue 12):
https://graphql.github.io/graphql-over-http/draft/ . The real app, over httpx's ASGI transport.

`application/graphql-response+json` when the client asks for it, `application/json` (every
well-formed request answered 200) for legacy clients; 406, 415, 405 and 400 for requests the
server cannot or will not take, each a GraphQL response with a coded error."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from models import Job
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import LiveServer

GQL = "application/graphql-response+json"
JSON = "application/json"
MEDIA_TYPES = [JSON, GQL]
ME = "{ me { email } }"
COSTLY = "{ jobs(first: 100) { edges { node { user { jobs(first: 100) { totalCount } } } } } }"
SUBMIT = """
mutation {
  submitJob(input: {projectName: "P", outputName: "p.mp4", templatePath: "/mnt/renders/p.aep",
                    dataPath: "/mnt/renders/p.json", outputPath: "/mnt/renders/p.mp4"}) { id }
}
"""


async def post(
    api: GraphQLClient,
    body: object,
    *,
    accept: str | None = JSON,
    token: str | None = None,
    content_type: str | None = JSON,
) -> httpx.Response:
    """`body` as JSON (bytes as they are); `accept`/`content_type` None: no such header."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = api.http.build_request("POST", "/graphql", content=content)
    set_headers(request, accept=accept, token=token, content_type=content_type)
    return await api.http.send(request)


async def get(
    api: GraphQLClient, params: dict[str, str], *, accept: str | None = JSON, token: str | None
) -> httpx.Response:
    request = api.http.build_request("GET", "/graphql", params=params)
    set_headers(request, accept=accept, token=token, content_type=None)
    return await api.http.send(request)


def set_headers(
    request: httpx.Request, *, accept: str | None, token: str | None, content_type: str | None
) -> None:
    for name, value in (("Accept", accept), ("Content-Type", content_type)):
        if value is None:
            request.headers.pop(name, None)
        else:
            request.headers[name] = value
    if token:
        request.headers["Authorization"] = f"Bearer {token}"


def answer(response: httpx.Response, status: int, media_type: str) -> dict[str, Any]:
    """The body of a GraphQL response of `status` in `media_type` (UTF-8, said so)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) <= {"data", "errors", "extensions"}, body
    return body


def refusal(response: httpx.Response, status: int, media_type: str, code: str) -> dict[str, Any]:
    """A request error: no data entry, one error with `code` and a message."""
    body = answer(response, status, media_type)
    assert "data" not in body, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert error["message"], error
    return error


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body["errors"]]


# === Accept ===================================================================================


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),  # legacy clients send none
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (f"{JSON}; charset=utf-8", JSON),
        ("text/html, */*;q=0.8", JSON),
        (f"{JSON}, {GQL};q=0.5", JSON),
        (f"{GQL};q=0.5, */*", JSON),
        (f"{GQL};q=0, */*", JSON),
        (f"{GQL};charset=latin-1, {JSON}", JSON),
        (GQL, GQL),
        (f"{GQL}, {JSON};q=0.9", GQL),
        (f"{GQL}; charset=utf-8, {JSON}; charset=utf-8", GQL),  # the spec's advice to clients
        (f"{JSON}, {GQL}", GQL),  # as preferred, and named
        (f"{GQL}, */*", GQL),
        (f"text/html;q=1, {GQL};q=0.2", GQL),
        ("APPLICATION/GRAPHQL-RESPONSE+JSON", GQL),
    ],
)
async def test_the_answer_is_in_the_media_type_the_client_prefers(
    api: GraphQLClient, accounts: dict[str, Account], accept: str | None, expected: str
) -> None:
    token = accounts["user"].token
    body = answer(await post(api, {"query": ME}, accept=accept, token=token), 200, expected)
    assert body == {"data": {"me": {"email": accounts["user"].email}}}
    got = await get(api, {"query": ME}, accept=accept, token=token)
    assert answer(got, 200, expected) == body


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "application/xml, text/plain",
        f"{JSON};q=0, {GQL};q=0",
        f"{JSON}; charset=latin-1",
        "image/*",
    ],
)
async def test_a_client_that_accepts_neither_media_type_gets_406(
    api: GraphQLClient, accounts: dict[str, Account], accept: str
) -> None:
    response = await post(api, {"query": SUBMIT}, accept=accept, token=accounts["user"].token)
    error = refusal(response, 406, JSON, "NOT_ACCEPTABLE")
    assert GQL in error["message"] and JSON in error["message"]
    assert await Job.all().count() == 0, "a refused request runs nothing"


async def test_a_browser_still_gets_graphiql_and_a_browser_query_gets_json(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for accept in ("text/html", browser):
        page = await get(api, {}, accept=accept, token=None)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "graphiql" in page.text.lower()
    token = accounts["user"].token
    answer(await get(api, {"query": ME}, accept=browser, token=token), 200, JSON)
    refusal(
        await get(api, {"query": ME}, accept="text/html", token=token), 406, JSON, "NOT_ACCEPTABLE"
    )


# === request errors and field errors ==========================================================

REQUEST_ERRORS = {
    "syntax": ({"query": "{ me { "}, "GRAPHQL_VALIDATION_FAILED"),
    "validation": ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    "variable": (
        {"query": "query($id: ID!) { job(id: $id) { id } }", "variables": {"id": {"a": 1}}},
        "BAD_USER_INPUT",
    ),
    "missing variable": ({"query": "query($id: ID!) { job(id: $id) { id } }"}, "BAD_USER_INPUT"),
    "unknown operation": ({"query": "query A { me { id } }", "operationName": "B"}, None),
    "no operation": ({"query": "fragment F on Query { me { id } }"}, None),
    "operation not named": (
        {"query": "query A { me { id } } mutation B { claimJob { id } }"},
        None,
    ),
    "empty document": ({"query": ""}, None),
    "subscription": ({"query": 'subscription { jobUpdated(id: "x") { kind } }'}, None),
    "costly": ({"query": COSTLY}, "QUERY_TOO_COSTLY"),
}
# Codes of the requests the view itself answers as request errors.
VIEW_CODES = {
    "unknown operation": "GRAPHQL_VALIDATION_FAILED",
    "no operation": "GRAPHQL_VALIDATION_FAILED",
    "operation not named": "GRAPHQL_VALIDATION_FAILED",
    "empty document": "GRAPHQL_VALIDATION_FAILED",
    "subscription": "OPERATION_NOT_ALLOWED",
}


@pytest.mark.parametrize("case", REQUEST_ERRORS)
async def test_a_request_error_is_400_without_data_in_graphql_response_json(
    api: GraphQLClient, accounts: dict[str, Account], case: str
) -> None:
    body, code = REQUEST_ERRORS[case]
    code = code or VIEW_CODES[case]
    token = accounts["admin"].token
    error = refusal(await post(api, body, accept=GQL, token=token), 400, GQL, code)
    assert "path" not in error
    # application/json: the legacy answer, 200 with data null and the same errors.
    legacy = answer(await post(api, body, accept=JSON, token=token), 200, JSON)
    assert legacy["data"] is None and codes(legacy) == [code]
    assert await Job.all().count() == 0, "nothing ran"


async def test_two_operations_run_only_the_named_one(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    body = {
        "query": "query A { me { email } } mutation B { claimJob { id } }",
        "operationName": "A",
    }
    got = answer(await post(api, body, accept=GQL, token=accounts["user"].token), 200, GQL)
    assert got == {"data": {"me": {"email": accounts["user"].email}}}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_a_document_that_ran_is_200_with_data_even_with_field_errors(
    api: GraphQLClient, accounts: dict[str, Account], media_type: str
) -> None:
    user = accounts["user"]
    forbidden = await post(api, {"query": "{ users { id } }"}, accept=media_type, token=user.token)
    body = answer(forbidden, 200, media_type)
    assert body["data"] is None and codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["users"]
    hidden = '{ job(id: "nosuchjob0000000000000000") { id } me { email } }'
    body = answer(
        await post(api, {"query": hidden}, accept=media_type, token=user.token), 200, media_type
    )
    assert body == {"data": {"job": None, "me": {"email": user.email}}}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_without_a_token_a_field_is_unauthenticated_with_data_null_and_200(
    api: GraphQLClient, media_type: str
) -> None:
    """The schema decides who reads what, field by field (the spec's advice): a request
    without a valid token runs, and each field that needs one fails with UNAUTHENTICATED."""
    for token in (None, "rt_not-a-token"):
        body = answer(
            await post(api, {"query": ME}, accept=media_type, token=token), 200, media_type
        )
        assert body["data"] is None and codes(body) == ["UNAUTHENTICATED"]
        assert body["errors"][0]["path"] == ["me"]


async def test_introspection_without_a_token_is_401_in_graphql_response_json(
    api: GraphQLClient,
) -> None:
    """Refused during validation, before anything runs: a request the client may not send."""
    introspection = {"query": "{ __schema { queryType { name } } }"}
    response = await post(api, introspection, accept=GQL)
    refusal(response, 401, GQL, "UNAUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"
    legacy = answer(await post(api, introspection, accept=JSON), 200, JSON)
    assert legacy["data"] is None and codes(legacy) == ["UNAUTHENTICATED"]


# === the request: method, Content-Type, parameters ============================================


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_a_mutation_over_get_is_405_and_does_not_run(
    api: GraphQLClient, accounts: dict[str, Account], media_type: str
) -> None:
    response = await get(api, {"query": SUBMIT}, accept=media_type, token=accounts["user"].token)
    refusal(response, 405, media_type, "OPERATION_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"
    named = {"query": "query A { me { id } } mutation B { claimJob { id } }", "operationName": "B"}
    response = await get(api, named, accept=media_type, token=accounts["worker"].token)
    refusal(response, 405, media_type, "OPERATION_NOT_ALLOWED")
    assert await Job.all().count() == 0
    # The same mutation over POST runs.
    body = answer(
        await post(api, {"query": SUBMIT}, accept=media_type, token=accounts["user"].token),
        200,
        media_type,
    )
    assert body["data"]["submitJob"]["id"]


@pytest.mark.parametrize("method", ["HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_are_405_naming_get_and_post(api: GraphQLClient, method: str) -> None:
    response = await api.http.request(method, "/graphql")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    if method != "HEAD":
        assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    "content_type",
    [
        JSON,
        f"{JSON}; charset=utf-8",
        f"{JSON};charset=UTF-8",
        'application/json; charset="utf-8"',
        "Application/JSON",
    ],
)
async def test_a_json_body_is_taken_with_or_without_its_utf8_charset(
    api: GraphQLClient, accounts: dict[str, Account], content_type: str
) -> None:
    response = await post(
        api, {"query": ME}, content_type=content_type, token=accounts["user"].token
    )
    assert answer(response, 200, JSON)["data"] == {"me": {"email": accounts["user"].email}}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",
        "application/jsonx",
        GQL,
        f"{JSON}; charset=latin-1",
    ],
)
async def test_a_body_that_is_not_json_in_utf8_is_415(
    api: GraphQLClient, accounts: dict[str, Account], media_type: str, content_type: str | None
) -> None:
    response = await post(
        api,
        {"query": SUBMIT},
        accept=media_type,
        content_type=content_type,
        token=accounts["user"].token,
    )
    error = refusal(response, 415, media_type, "UNSUPPORTED_MEDIA_TYPE")
    assert JSON in error["message"] or "UTF-8" in error["message"]
    assert await Job.all().count() == 0


MALFORMED: dict[str, tuple[object, str | None]] = {
    "not JSON": (b'{"query":', None),
    "nonsense": (b"NONSENSE", None),
    "not UTF-8": (b'{"query": "\xff\xfe"}', None),
    "empty body": (b"", None),
    "an array": ([{"query": ME}], None),
    "a string": ("x", None),
    "null": (None, None),
    "query missing": ({"qeury": "{ __typename }"}, "query"),
    "query null": ({"query": None}, "query"),
    "query a number": ({"query": 1}, "query"),
    "query an object": ({"query": {"a": 1}}, "query"),
    "query a list": ({"query": [ME]}, "query"),
    "query a boolean": ({"query": True}, "query"),
    "variables a list": ({"query": ME, "variables": [7]}, "variables"),
    "variables a string": ({"query": ME, "variables": "{}"}, "variables"),
    "extensions a string": ({"query": ME, "extensions": "x"}, "extensions"),
    "extensions a number": ({"query": ME, "extensions": 1}, "extensions"),
    "operationName a number": ({"query": ME, "operationName": 1}, "operationName"),
    "operationName an object": ({"query": ME, "operationName": {}}, "operationName"),
}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_request_is_400_naming_the_parameter(
    api: GraphQLClient, accounts: dict[str, Account], media_type: str, case: str
) -> None:
    body, parameter = MALFORMED[case]
    response = await post(api, body, accept=media_type, token=accounts["user"].token)
    error = refusal(response, 400, media_type, "BAD_USER_INPUT")
    if parameter is None:
        assert "fields" not in error["extensions"]
    else:
        assert parameter in error["message"]
        [field] = error["extensions"]["fields"]
        assert field["field"] == parameter and field["message"]


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_a_malformed_get_is_400_naming_the_parameter(
    api: GraphQLClient, accounts: dict[str, Account], media_type: str
) -> None:
    token = accounts["user"].token
    for params, parameter in [
        ({}, "query"),
        ({"query": ME, "variables": "{x"}, "variables"),
        ({"query": ME, "variables": "[1]"}, "variables"),
        ({"query": ME, "extensions": "not json"}, "extensions"),
        ({"query": ME, "extensions": "3"}, "extensions"),
    ]:
        response = await get(api, params, accept=media_type, token=token)
        error = refusal(response, 400, media_type, "BAD_USER_INPUT")
        assert error["extensions"]["fields"][0]["field"] == parameter, params


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_null_optional_parameters_are_absent_ones(
    api: GraphQLClient, accounts: dict[str, Account], media_type: str
) -> None:
    token = accounts["user"].token
    body = {"query": ME, "variables": None, "operationName": None, "extensions": None}
    assert answer(await post(api, body, accept=media_type, token=token), 200, media_type)["data"]
    params = {"query": ME, "variables": "", "operationName": "", "extensions": ""}
    assert answer(await get(api, params, accept=media_type, token=token), 200, media_type)["data"]
    query = "query($id: ID!) { job(id: $id) { id } }"
    params = {"query": query, "variables": json.dumps({"id": "x"})}
    assert answer(await get(api, params, accept=media_type, token=token), 200, media_type)["data"]


async def test_a_client_that_leaves_mid_body_is_no_server_error(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"query": "{ me'
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(10):  # the request's own log line: the server has handled it
        while not any(record.getMessage() == "POST /graphql 499" for record in caplog.records):
            await asyncio.sleep(0.02)
    async with httpx.AsyncClient(base_url=live.http_url, timeout=10) as client:
        # The server goes on serving; the request that never arrived left no error behind.
        answer = await client.post("/graphql", json={"query": "{ __typename }"})
    assert answer.status_code == 200
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], [record.getMessage() for record in errors]
