"""The express lane of a live subscription: an event sent straight to a waiting subscriber's
socket, in the bus's own pass over the event's subscribers.

The usual way, each subscriber of an event wakes its operation's task, which takes the event
up through its generators (service/live.py, gql/subscriptions.py), graphql-core and Strawberry's
per-result steps, and down through Starlette's and uvicorn's `send`: ~70 µs of CPU per
subscriber, most of it layers, and a thousand subscribers of one job wait for one another.

The express lane is used only when it sends the very bytes the usual way would send:

- the subscription runs over graphql-transport-ws on uvicorn (gql/direct_ws.py can write
  without waiting), its operation is still running, and its socket is writable now;
- its generator waits for the next change with nothing pending, and this change simply
  follows the last one sent (service/live.follow_job decides, with the same rule as always);
- the event's result is shared (gql/fanout.py) and already computed, or computes without
  waiting, and has no errors; and the schema's extensions add nothing to a result.

Anything else (the snapshot, a replay, the change that ends the stream, a result with errors
or that needs the database, a slow client) goes the usual way, in order: a subscriber's
messages leave one at a time whichever way they take.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types import Info

from gql.direct_ws import DirectWriter
from gql.events import event_of
from gql.fanout import SUBSCRIPTION_EXECUTOR, SharedData
from service.live import Update


@dataclass(frozen=True, slots=True)
class Outlet:
    """Where a running graphql-transport-ws operation's messages go."""

    writer: DirectWriter
    operation_id: str
    is_open: Callable[[], bool]


# Set by the websocket handler around each operation's task (gql/ws_handlers.py).
OUTLET: contextvars.ContextVar[Outlet | None] = contextvars.ContextVar(
    "rendertrack_outlet", default=None
)


def lane(info: Info) -> Callable[[Update], bool] | None:
    """The express lane of the subscription this resolver serves, or None when it has none."""
    outlet = OUTLET.get()
    executor = SUBSCRIPTION_EXECUTOR.get()
    if outlet is None or executor is None or not _adds_nothing(info):
        return None
    # Resolvers run as in the operation's own task (its request id, its metrics).
    context = contextvars.copy_context()

    def send(update: Update) -> bool:
        if not outlet.is_open():
            return False
        result = context.run(executor.result_now, event_of(update))
        if result is None or result.errors or type(result.data) is not SharedData:
            return False
        return outlet.writer.send_text(result.data.frame("next", outlet.operation_id).encode())

    return send


_HOOKS_FREE: dict[int, bool] = {}


def _adds_nothing(info: Info) -> bool:
    """Whether the schema's extensions leave every subscription result as executed (no
    `extensions` entry, no per-result hook)."""
    schema: Any = info.schema
    known = _HOOKS_FREE.get(id(schema))
    if known is None:
        known = _HOOKS_FREE[id(schema)] = all(
            _unchanged(extension, "get_results") and _unchanged(extension, "on_stream_result")
            for extension in schema.extensions
        )
    return known


def _unchanged(extension: Any, hook: str) -> bool:
    kind = extension if isinstance(extension, type) else type(extension)
    return getattr(kind, hook) is getattr(SchemaExtension, hook)
