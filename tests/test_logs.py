"""The server's log lines as an operator reads them: one line per HTTP request (request id, user,
operation, status, duration) and per websocket opened and closed, in the format
RENDERTRACK_LOG_FORMAT picks, and never a token: a real `rendertrack serve`'s log is searched for
every token it was sent."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.logs import (
    ACCESS_LOGGER,
    JsonFormatter,
    KeyValueFormatter,
    OutageInOneLine,
    TextFormatter,
    logging_config,
)
from app.settings import Settings
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.live_server import open_socket
from tests.observed_server import server_database
from tests.operations import CREATE_USER, mutate
from tests.server_process import rendertrack_serve

WAIT = 10.0
ME = "query Me { me { id } }"
TOKEN_SHAPE = re.compile(r"rt_[A-Za-z0-9_-]{20,}")


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS_LOGGER]


async def post(http: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    response = await http.post(
        "/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}", **headers}
    )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.slow
async def test_a_real_servers_json_log_has_a_line_per_request_and_websocket_and_no_token(
    tmp_path: Path,
) -> None:
    async with (
        server_database(tmp_path) as url,
        rendertrack_serve(url, tmp_path / "logs", env={"RENDERTRACK_LOG_FORMAT": "json"}) as server,
    ):
        admin = await server.read_token()
        await server.until_healthy()
        async with httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as http:
            graphql = GraphQLClient(http)
            created = await mutate(graphql, admin, CREATE_USER, email="w@farm.local", role="WORKER")
            worker = created["createUser"]["token"]
            traced = await post(http, admin, **{"X-Request-ID": "trace-42"})
            admin_id = traced.json()["data"]["me"]["id"]
            untraceable = await post(http, admin, **{"X-Request-ID": "two words"})
            nexrender = await http.get("/api/v1/jobs", headers={"nexrender-secret": admin})
            worker_id = (await post(http, worker)).json()["data"]["me"]["id"]
        async with open_socket(server.live) as socket:
            assert (await socket.init(worker))["type"] == "connection_ack"
            await socket.subscribe("subscription { jobEvents { kind } }", {})
        async with asyncio.timeout(WAIT):  # closed by the client, before the server stops
            while "websocket closed" not in server.log_text():
                await asyncio.sleep(0.05)
        await server.stop()
    log = server.log_text()

    assert traced.headers["x-request-id"] == "trace-42"
    generated = untraceable.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert nexrender.status_code == 200
    served = log.split("serving the dashboard", 1)[1].splitlines()[1:]
    lines = [json.loads(line) for line in served]  # every line of the server is one object
    requests = [line for line in lines if line["logger"] == ACCESS_LOGGER]

    [line] = [line for line in requests if line.get("request_id") == "trace-42"]
    assert line["level"] == "info" and line["message"] == "POST /graphql 200"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/graphql", 200)
    assert line["operation"] == "query Me"
    assert line["user_id"] in (admin_id, None)  # see test_an_http_requests_line_names_its_user
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert [line["request_id"] for line in requests if line.get("request_id") == generated]
    [rest] = [line for line in requests if line.get("path") == "/api/v1/jobs"]
    assert (rest["operation"], rest["status"]) == ("GET /api/v1/jobs", 200)
    [opened] = [line for line in requests if line["message"].startswith("websocket open")]
    [closed] = [line for line in requests if line["message"].startswith("websocket closed")]
    assert opened["request_id"] == closed["request_id"]
    assert (closed["user_id"], closed["code"]) == (worker_id, 1000)

    for token in (admin, worker):
        assert token not in log
    assert not TOKEN_SHAPE.search(log), "something shaped like a token was logged"
    assert "Traceback" not in log


async def test_the_text_and_keyvalue_lines_of_a_request(
    api: GraphQLClient, accounts: dict[str, Account], caplog: pytest.LogCaptureFixture
) -> None:
    admin = accounts["admin"]
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await post(api.http, admin.token, **{"X-Request-ID": "req-7"})
    [record] = access_records(caplog)

    user = rf"(?: user_id={admin.id})?"  # see test_an_http_requests_line_names_its_user
    text = TextFormatter(fmt="%(levelprefix)s %(message)s", use_colors=False).format(record)
    assert re.fullmatch(
        rf'INFO:     POST /graphql 200 request_id=req-7 duration_ms=[\d.]+ operation="query Me"'
        rf"{user} client=\S+",
        text,
    ), text
    keyvalue = KeyValueFormatter().format(record)
    assert re.fullmatch(
        rf"time=\S+Z level=info logger=rendertrack.access pid=\d+ "
        rf'msg="POST /graphql 200" request_id=req-7 method=POST path=/graphql status=200 '
        rf'duration_ms=[\d.]+ operation="query Me"{user} client=\S+',
        keyvalue,
    ), keyvalue


async def test_an_http_requests_line_names_its_user(
    api: GraphQLClient, accounts: dict[str, Account], caplog: pytest.LogCaptureFixture
) -> None:
    admin, worker = accounts["admin"], accounts["worker"]
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await post(api.http, admin.token)
        await api.http.get("/api/v1/jobs/pickup", headers={"nexrender-secret": worker.token})
    users = [record.__dict__["fields"]["user_id"] for record in access_records(caplog)]
    assert users == [admin.id, worker.id]


async def test_a_long_or_unprintable_request_id_is_replaced(
    api: GraphQLClient, accounts: dict[str, Account], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        for given in ("x" * 129, "tab\there", "ünïcode".encode()):
            response = await api.http.get("/healthz", headers={"X-Request-ID": given})
            assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), given
    logged = [record.__dict__["fields"]["request_id"] for record in access_records(caplog)]
    assert len(logged) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in logged)


async def test_a_request_without_a_valid_token_names_no_user(
    api: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await api.http.post("/graphql", json={"query": ME})
        await api.http.post(
            "/graphql", json={"query": ME}, headers={"Authorization": "Bearer rt_" + "x" * 43}
        )
        await api.http.get("/api/v1/jobs", headers={"nexrender-secret": "rt_" + "y" * 43})
    assert [r.__dict__["fields"]["user_id"] for r in access_records(caplog)] == [None] * 3


def record_with(message: str, *args: Any, exc: bool = False) -> logging.LogRecord:
    try:
        raise RuntimeError(f"failed with {message % args}")
    except RuntimeError:
        exc_info = sys.exc_info() if exc else None
    return logging.LogRecord("gql.view", logging.ERROR, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize(
    "formatter",
    [
        TextFormatter(fmt="%(levelprefix)s %(message)s", use_colors=False),
        KeyValueFormatter(),
        JsonFormatter(),
    ],
    ids=["text", "keyvalue", "json"],
)
def test_every_format_masks_anything_shaped_like_a_token(formatter: logging.Formatter) -> None:
    token = "rt_" + "Ab3-_" * 9
    line = formatter.format(record_with("header was %s", f"Bearer {token}", exc=True))
    assert token not in line
    assert "rt_[masked]" in line
    if not isinstance(formatter, TextFormatter):  # text keeps uvicorn's multi-line tracebacks
        assert "\n" not in line
    if isinstance(formatter, JsonFormatter):
        parsed = json.loads(line)
        assert parsed["level"] == "error" and "RuntimeError" in parsed["error"]


def test_the_log_format_setting() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"RENDERTRACK_LOG_FORMAT": " JSON "}).log_format == "json"
    assert Settings.from_env({"RENDERTRACK_LOG_FORMAT": "keyvalue"}).log_format == "keyvalue"
    with pytest.raises(ValueError, match=r"RENDERTRACK_LOG_FORMAT must be one of text, json"):
        Settings.from_env({"RENDERTRACK_LOG_FORMAT": "xml"})


def test_every_logger_writes_in_the_chosen_format_on_stderr() -> None:
    config = logging_config("json")
    assert config["handlers"]["default"]["stream"] == "ext://sys.stderr"
    assert config["handlers"]["access"]["stream"] == "ext://sys.stderr"
    assert config["root"]["handlers"] == ["default"]
    for formatter in config["formatters"].values():
        assert formatter["()"] == "app.logs.JsonFormatter"
    assert config["loggers"]["rendertrack"]["level"] == "INFO"


def raised(error: BaseException) -> Any:
    try:
        raise error
    except BaseException:
        return sys.exc_info()


def filtered_line(level: int, error: BaseException) -> str:
    record = logging.LogRecord(
        "asyncpg.pool", level, __file__, 1, "Failed to restore the %s; retrying",
        ("pool connection floor",), raised(error),
    )  # fmt: skip
    assert OutageInOneLine().filter(record)
    return TextFormatter(fmt="%(levelprefix)s %(message)s", use_colors=False).format(record)


def test_a_warning_that_the_database_cannot_be_reached_is_one_line() -> None:
    assert logging_config("json")["handlers"]["default"]["filters"] == ["outage"]
    refused = asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
    assert filtered_line(logging.WARNING, refused) == (
        "WARNING:  Failed to restore the pool connection floor; retrying"
        " (CannotConnectNowError: the database system is shutting down)"
    )


@pytest.mark.parametrize(
    ("level", "error"),
    [
        (logging.ERROR, asyncpg.exceptions.CannotConnectNowError("shutting down")),
        (logging.WARNING, ValueError("a defect")),
    ],
    ids=["an error", "another failure"],
)
def test_other_tracebacks_are_kept(level: int, error: BaseException) -> None:
    line = filtered_line(level, error)
    assert "Traceback (most recent call last)" in line and type(error).__name__ in line
