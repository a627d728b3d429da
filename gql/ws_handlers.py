"""Strawberry's two websocket protocol handlers, with refusals that say why: a refused
connection_init closes the socket with 4403 and the reason on both protocols (Strawberry closes
graphql-transport-ws with a bare "Forbidden" and the legacy protocol with 1011), and the
subscription cap's refusal is coded (Strawberry sends a bare "Subscription limit reached").

Both count the subscriptions they run (service.metrics), and keep the queries and mutations in
flight, so that a stopping server lets them finish before it closes the websockets.

A `next` (graphql-transport-ws) or `data` (legacy) message whose result every subscriber of an
event shares (gql/fanout.py) is sent as text built around the payload's JSON, encoded once for
all of them: byte for byte what Strawberry's encoding of the message would be."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from functools import partial
from typing import Any, NoReturn

from starlette.websockets import WebSocketDisconnect
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from gql import express
from gql.direct_ws import writer_of
from gql.fanout import SharedData
from service import metrics

STRAWBERRY_LIMIT_MESSAGE = "Subscription limit reached"
CODE = "TOO_MANY_SUBSCRIPTIONS"


def limit_error(limit: int | None) -> dict[str, Any]:
    return {
        "message": f"This connection already carries {limit} operations, the most one may "
        "(RENDERTRACK_MAX_SUBSCRIPTIONS_PER_CONNECTION): complete one, or open another "
        "connection.",
        "extensions": {"code": CODE, "limit": limit},
    }


def _coded(message: Any, limit: int | None) -> Any:
    if not isinstance(message, dict) or message.get("type") != "error":
        return message
    payload = message.get("payload")
    errors = payload if isinstance(payload, list) else [payload]
    if any(isinstance(e, dict) and e.get("message") == STRAWBERRY_LIMIT_MESSAGE for e in errors):
        coded = limit_error(limit)
        return {**message, "payload": [coded] if isinstance(payload, list) else coded}
    return message


REFUSED_CLOSE_CODE = 4403
# What graphql-transport-ws closes a malformed message with; the legacy protocol has no code.
MALFORMED_CLOSE_CODE = 4400
NOT_AN_OBJECT = "WebSocket message must be a JSON object"
# A websocket close frame's reason holds at most 123 bytes.
MAX_REASON_BYTES = 123


def reject(
    context: Any,
    reason: str,
    *,
    code: str = "FORBIDDEN",
    detail: str | None = None,
    close_code: int | None = None,
) -> NoReturn:
    """Refuses connection_init: remembers why for the close frame (4403 unless `close_code`
    says otherwise), and raises Strawberry's rejection (whose payload the legacy protocol sends
    as connection_error)."""
    context.rejection = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
    context.rejection_close_code = close_code or REFUSED_CLOSE_CODE
    raise ConnectionRejectionError({"message": detail or reason, "code": code})


class _RefusalCloser:
    """Strawberry's websocket adapter, with a close after a refused connection_init turned into
    4403 and the reason."""

    def __init__(self, adapter: Any, context: Any) -> None:
        self._adapter = adapter
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    async def close(self, code: int, reason: str) -> None:
        rejection = getattr(self._context, "rejection", None)
        if rejection:
            code = getattr(self._context, "rejection_close_code", REFUSED_CLOSE_CODE)
            reason = rejection
        await self._adapter.close(code, reason)

    async def send_text(self, text: str) -> None:
        """Sends JSON text already encoded, as the adapter's send_json would send it."""
        websocket = getattr(self._adapter, "ws", None)
        if websocket is None:  # not Starlette's: the adapter encodes again
            await self._adapter.send_json(json.loads(text))
            return
        try:
            await websocket.send_text(text)
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


def shared_frame(message: Any, kind: str) -> str | None:
    """The text of a `kind` message ({"id", "type", "payload": {"data"}}, keys in any order)
    whose data is shared (gql/fanout.py), with the payload's JSON encoded once; None for any
    other message."""
    if type(message) is not dict or message.get("type") != kind or len(message) != 3:
        return None
    payload = message.get("payload")
    if type(payload) is not dict or len(payload) != 1:
        return None
    data = payload.get("data")
    if type(data) is not SharedData or not isinstance(message.get("id"), str):
        return None
    return data.frame(kind, message["id"], tuple(message))


# The queries and mutations running on this process's websockets (their operations' tasks).
_in_flight: set[asyncio.Task[Any]] = set()


async def operations_finished() -> None:
    """Returns once the queries and mutations running on websockets now have finished (bound
    the wait with asyncio.timeout)."""
    running = {task for task in _in_flight if not task.done()}
    if running:
        await asyncio.wait(running)


@contextlib.contextmanager
def _operation(query: object, operation_name: object) -> Iterator[None]:
    """Around one operation's task: a subscription is counted while it runs; any other
    operation is kept in flight."""
    kind, _ = metrics.graphql_operation(query, operation_name)
    if kind == "subscription":
        metrics.SUBSCRIPTIONS.inc()
        try:
            yield
        finally:
            metrics.SUBSCRIPTIONS.dec()
        return
    task = asyncio.current_task()
    if task is None:
        yield
        return
    _in_flight.add(task)
    try:
        yield
    finally:
        _in_flight.discard(task)


class TransportWSHandler(BaseGraphQLTransportWSHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websocket = _RefusalCloser(self.websocket, self.context)

    async def handle_message(self, message: Any) -> None:
        """Strawberry reads `message["type"]` unchecked: JSON that is not an object (an array,
        a number) crashed the socket with a traceback."""
        if not isinstance(message, dict):
            await self.handle_invalid_message(NOT_AN_OBJECT)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        timer = self.connection_init_timeout_task
        await super().handle_connection_init(message)
        if timer is not None:
            # Strawberry keeps the cancelled timer (its CancelledError, traceback and frames)
            # as long as the socket lives: let it go once it is done.
            timer.add_done_callback(self._forget_init_timer)

    def _forget_init_timer(self, timer: asyncio.Task[None]) -> None:
        if self.connection_init_timeout_task is timer:
            self.connection_init_timeout_task = None

    async def run_operation(self, operation: Any) -> None:
        writer = writer_of(getattr(getattr(self.websocket, "ws", None), "scope", {}))
        if writer is not None:
            express.OUTLET.set(express.Outlet(writer, operation.id, partial(self._runs, operation)))
        with _operation(operation.query, operation.operation_name):
            await super().run_operation(operation)

    def _runs(self, operation: Any) -> bool:
        return not operation.completed and self.operations.get(operation.id) is operation

    async def send_message(self, message: Any) -> None:
        frame = shared_frame(message, "next")
        if frame is not None:
            await self.websocket.send_text(frame)
            return
        await super().send_message(_coded(message, self.max_subscriptions_per_connection))


class LegacyWSHandler(BaseGraphQLWSHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websocket = _RefusalCloser(self.websocket, self.context)

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            await self.websocket.close(code=MALFORMED_CLOSE_CODE, reason=NOT_AN_OBJECT)
            return
        await super().handle_message(message)

    async def handle_start(self, message: Any) -> None:
        """Strawberry reads `id` unchecked: a `start` without a string id crashed the socket."""
        if not isinstance(message.get("id"), str) or not isinstance(message.get("payload"), dict):
            await self.websocket.close(
                code=MALFORMED_CLOSE_CODE, reason="start needs a string id and a payload object"
            )
            return
        await super().handle_start(message)

    async def handle_stop(self, message: Any) -> None:
        if not isinstance(message.get("id"), str):
            await self.websocket.close(code=MALFORMED_CLOSE_CODE, reason="stop needs a string id")
            return
        await super().handle_stop(message)

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: Any
    ) -> None:
        with _operation(query, operation_name):
            await super().handle_async_results(operation_id, query, operation_name, variables)

    async def send_message(self, message: Any) -> None:
        frame = shared_frame(message, "data")
        if frame is not None:
            await self.websocket.send_text(frame)
            return
        await super().send_message(_coded(message, self.max_subscriptions_per_connection))
