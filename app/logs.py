"""The server's log lines, in one of three formats (RENDERTRACK_LOG_FORMAT), and the middleware
that writes one line per HTTP request and per websocket.

- `text` (the default): uvicorn's lines, `INFO:     message key=value ...`.
- `json`: one JSON object per line (`time`, `level`, `logger`, `pid`, `message`, then the
  fields; `error` holds a traceback).
- `keyvalue`: `time=... level=... logger=... pid=... msg=... key=value ...` on one line.

Each HTTP request is one line of the `rendertrack.access` logger: method, path, status,
duration, operation (the GraphQL operation's type and name, or the method and route), the user
its token turned out to be (service.metrics.note_user, where the token is checked), the client's
address and the request id (an incoming X-Request-ID that is short and printable, else a new
one; sent back in the response's X-Request-ID). A websocket is a line when it opens and one when
it closes (its close code and its user).

No token is read here, and every formatter masks anything shaped like an API token in the final
line, whatever logged it. A warning that the database cannot be reached is one line, without
its traceback (OutageInOneLine).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.logging import DefaultFormatter

from models.reachability import database_unreachable
from service import metrics

ACCESS_LOGGER = "rendertrack.access"
access = logging.getLogger(ACCESS_LOGGER)

LOG_FORMATS = ("text", "json", "keyvalue")
REQUEST_ID_HEADER = b"x-request-id"
# An incoming request id is kept when it is this short and printable ASCII (no spaces).
_GIVEN_REQUEST_ID = re.compile(rb"[!-~]{1,128}")
# What an API token looks like (domain/users.py: "rt_" and 43 URL-safe characters).
_TOKEN = re.compile(r"rt_[A-Za-z0-9_-]{20,}")
MASKED_TOKEN = "rt_[masked]"
# A value written bare in key=value pairs; anything else is quoted as a JSON string.
_BARE = re.compile(r"[A-Za-z0-9_.:/@+{}\[\]-]+")
# The most of a request body read again for its GraphQL operation (the body limit is 1 MiB).
MAX_SCANNED_BODY = 1024 * 1024 + 1
# A log line names at most this much of an operation name.
MAX_LOGGED_OPERATION = 100
GOING_AWAY = 1001


# --- formats ----------------------------------------------------------------------------------


def mask_tokens(line: str) -> str:
    return _TOKEN.sub(MASKED_TOKEN, line)


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = record.__dict__.get("fields")
    return fields if isinstance(fields, Mapping) else {}


def _pairs(values: Mapping[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        text = str(value)
        if not isinstance(value, int | float) and not _BARE.fullmatch(text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(DefaultFormatter):
    """uvicorn's own format, with the record's fields as key=value after the message."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        shown = record.__dict__.get("in_message", ())
        fields = {key: value for key, value in _fields(record).items() if key not in shown}
        return f"{text} {_pairs(fields)}" if fields else text

    def format(self, record: logging.LogRecord) -> str:
        return mask_tokens(super().format(record))


def _values(
    formatter: logging.Formatter, record: logging.LogRecord, message: str
) -> dict[str, Any]:
    """What a structured line holds: when, how grave, where from, the message (under `message`),
    the record's fields, and the error's traceback if any."""
    values: dict[str, Any] = {
        "time": _time(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "pid": record.process,
        message: record.getMessage(),
        **_fields(record),
    }
    if record.exc_info:
        values["error"] = formatter.formatException(record.exc_info)
    return values


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_tokens(_pairs(_values(self, record, "msg")))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        values = _values(self, record, "message")
        if record.stack_info:
            values["stack"] = self.formatStack(record.stack_info)
        return mask_tokens(json.dumps(values, default=str))


def logging_config(log_format: str = "text") -> dict[str, Any]:
    """The logging of `rendertrack serve` (uvicorn's log_config), everything on stderr: stdout
    carries only what a script captures, the bootstrap token."""
    from uvicorn.config import LOGGING_CONFIG

    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    if log_format == "text":
        config["formatters"]["default"]["()"] = f"{__name__}.TextFormatter"
    else:
        name = "JsonFormatter" if log_format == "json" else "KeyValueFormatter"
        config["formatters"]["default"] = {"()": f"{__name__}.{name}"}
        config["formatters"]["access"] = {"()": f"{__name__}.{name}"}
    # rendertrack's own lines (requests, the sweeper's actions, unexpected errors) beside
    # uvicorn's; anything else at WARNING and above in the same format.
    for package in ("app", "gql", "service", "compat", "rendertrack"):
        config["loggers"][package] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    config.setdefault("filters", {})["outage"] = {"()": f"{__name__}.OutageInOneLine"}
    config["handlers"]["default"]["filters"] = ["outage"]
    return config


class OutageInOneLine(logging.Filter):
    """A warning about a database that cannot be reached is one line: the error's type and
    message are appended and its traceback dropped. asyncpg's pool, for one, logs each failed
    reconnect of its connection floor with a traceback while the database is down. Errors keep
    their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno <= logging.WARNING and error and database_unreachable(error):
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


# --- the request ---------------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value
    return None


def _request_id(scope: Scope) -> str:
    given = _header(scope, REQUEST_ID_HEADER)
    if given is not None and _GIVEN_REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return uuid.uuid4().hex


def _api(path: str) -> str:
    if path == "/graphql":
        return metrics.GRAPHQL
    if path.startswith("/api/"):
        return metrics.NEXRENDER
    return metrics.INTERNAL


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


# --- open websockets ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Websocket:
    send: Send  # the server's, beneath the app's
    accepted: bool = False
    closed: bool = False
    code: int | None = None


@dataclass
class OpenWebsockets:
    """This process's websockets as the server holds them, so that a stopping server can close
    them all with 1001 ("going away": the client reconnects, to another process) before uvicorn
    closes them with 1012. Once `stopping`, new websockets are refused."""

    stopping: bool = False
    _open: set[_Websocket] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self._open)

    def add(self, socket: _Websocket) -> None:
        self._open.add(socket)

    def discard(self, socket: _Websocket) -> None:
        self._open.discard(socket)

    async def close_all(self, reason: str = "The server is shutting down.") -> None:
        await asyncio.gather(
            *(self._close(socket, reason) for socket in list(self._open)), return_exceptions=True
        )

    @staticmethod
    async def _close(socket: _Websocket, reason: str) -> None:
        if socket.closed or not socket.accepted:
            return
        socket.closed, socket.code = True, GOING_AWAY
        await socket.send({"type": "websocket.close", "code": GOING_AWAY, "reason": reason})


# --- the middleware -----------------------------------------------------------------------------


class RequestLog:
    """Outermost ASGI middleware: a request id, one log line and one duration (metrics) per HTTP
    request, and one line per websocket opened and closed. Around each, the request's facts
    (service.metrics.RequestFacts): the API it came through, for the counters of the use cases
    it runs, and the user its token turns out to be, for its line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        websockets: OpenWebsockets,
        operation_labels: metrics.OperationLabels | None = None,
    ) -> None:
        self.app = app
        self.websockets = websockets
        self.labels = operation_labels or metrics.OperationLabels()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = _request_id(scope)
        path: str = scope.get("path", "")
        reads_body = path == "/graphql" and scope.get("method") == "POST"
        body = bytearray()
        status = 500  # unless a response starts: an error the app did not answer

        async def teed_receive() -> Message:
            message = await receive()
            if reads_body and message["type"] == "http.request" and len(body) < MAX_SCANNED_BODY:
                body.extend(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        facts, token = metrics.begin_request(_api(path))
        try:
            await self.app(scope, teed_receive, send_with_id)
        finally:
            metrics.end_request(token)
            self._log_request(scope, request_id, status, started, bytes(body), facts.user_id)

    def _log_request(
        self,
        scope: Scope,
        request_id: str,
        status: int,
        started: float,
        body: bytes,
        user_id: str | None,
    ) -> None:
        seconds = time.perf_counter() - started
        label, operation = self._operation(scope, body)
        metrics.HTTP_SECONDS.labels(label).observe(seconds)
        method, path = scope.get("method", ""), scope.get("path", "")
        access.log(
            logging.WARNING if status >= 500 else logging.INFO,
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "fields": {
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "operation": operation,
                    "user_id": user_id,
                    "client": _client(scope),
                },
                "in_message": ("method", "path", "status"),  # text shows them once
            },
        )

    def _operation(self, scope: Scope, body: bytes) -> tuple[str, str]:
        """(metrics label, what the log line says): the GraphQL operation for /graphql, else
        the method and the route's template."""
        method = scope.get("method", "")
        if scope.get("path") == "/graphql":
            document, name = _graphql_request(scope, body)
            if document is not None:
                kind, found = metrics.graphql_operation(document, name)
                label = self.labels.graphql(kind, found)
                logged = f"{kind} {found or metrics.ANONYMOUS}" if kind else metrics.ANONYMOUS
                return label, logged[:MAX_LOGGED_OPERATION]
        route = scope.get("route")
        if isinstance(route, Mount):  # an app under a prefix (the files under /static)
            label = f"{method} {scope.get('root_path', '')}/{{path}}"
            return label, label
        template = getattr(route, "path", None)
        if template is None:
            return "unmatched", f"{method} (no route)"
        label = f"{method} {scope.get('root_path', '')}{template}"
        return label, label

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = _request_id(scope)
        path: str = scope.get("path", "")
        if self.websockets.stopping:
            await send({"type": "websocket.close", "code": GOING_AWAY, "reason": "stopping"})
            return
        socket = _Websocket(send)

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect" and socket.code is None:
                socket.code = message.get("code")
            return message

        async def tracked_send(message: Message) -> None:
            kind = message["type"]
            if socket.closed and kind in ("websocket.send", "websocket.close"):
                return  # closed by the server's stop: the app learns it from its receive
            if kind == "websocket.accept":
                if self.websockets.stopping:
                    socket.closed = True
                    message = {"type": "websocket.close", "code": GOING_AWAY}
                else:
                    echoed = (REQUEST_ID_HEADER, request_id.encode())
                    message = {**message, "headers": [*message.get("headers", ()), echoed]}
                    socket.accepted = True
                    self._log_websocket(
                        "open", scope, request_id, subprotocol=message.get("subprotocol")
                    )
            elif kind == "websocket.close":
                socket.closed = True
                socket.code = message.get("code", 1000)
            await send(message)

        self.websockets.add(socket)
        facts, token = metrics.begin_request(_api(path))
        try:
            await self.app(scope, tracked_receive, tracked_send)
        finally:
            metrics.end_request(token)
            self.websockets.discard(socket)
            if socket.accepted:
                self._log_websocket(
                    "closed",
                    scope,
                    request_id,
                    code=socket.code,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    user_id=facts.user_id,
                )
            else:
                self._log_websocket("refused", scope, request_id)

    @staticmethod
    def _log_websocket(what: str, scope: Scope, request_id: str, **fields: Any) -> None:
        path = scope.get("path", "")
        access.info(
            "websocket %s %s",
            what,
            path,
            extra={
                "fields": {
                    "request_id": request_id,
                    "path": path,
                    **fields,
                    "client": _client(scope),
                },
                "in_message": ("path",),
            },
        )


def _graphql_request(scope: Scope, body: bytes) -> tuple[object, object]:
    """(query, operationName) of a GraphQL request over HTTP; (None, None) without one."""
    if scope.get("method") == "GET":
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        query = params.get("query", [None])[0]
        return query, params.get("operationName", [None])[0]
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(request, dict):
        return None, None
    return request.get("query"), request.get("operationName")
