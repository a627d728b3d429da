"""One event, many subscribers: the selection of a subscription document runs once per event,
caller and variables, and every subscriber with the same ones receives that one result, and
that one result is encoded to JSON once.

The bus hands one job object to every subscriber of an event (service/bus/core.py). A
subscriber's per-event execution keys its result on that object, with the document's text, the
operation, the variables and the caller (visibility decides what some fields show, so results
are never shared between callers). Snapshots and replays build a job object per subscriber and
are executed as usual.

Once the first subscriber's execution of an event has finished, the others do not build an
executor for it at all: they are handed the finished result. Its data is a `SharedData` (a
dict), whose JSON text is encoded the first time a websocket sends it and reused by every other
subscriber's `next` message (gql/ws_handlers.py), so that the work per subscriber is a send.

The express lane (gql/express.py) takes a result only when it is ready without waiting
(`FanOutExecutor.result_now`), and the whole `next` frame from `SharedData.frame`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, Awaitable, Hashable
from contextvars import ContextVar
from typing import Any, TypeVar

from graphql import ExecutionResult

from gql.limits import SchemaHintsExecutor
from service.event_store import MEMO_PREFIX

_RESULTS = f"{MEMO_PREFIX}_results"
T = TypeVar("T")


class SharedData(dict):  # type: ignore[type-arg]
    """The data of a result every subscriber with the same document, variables and caller
    receives for one event. Nothing changes it after execution: its JSON is encoded once."""

    __slots__ = ("_frames", "_payload_json")

    def payload_json(self) -> str:
        """`{"data": ...}` as JSON, exactly as Strawberry's websocket transports encode a
        payload (compact separators, ASCII)."""
        try:
            return self._payload_json
        except AttributeError:
            self._payload_json: str = json.dumps({"data": self}, separators=(",", ":"))
            return self._payload_json

    def frame(
        self, kind: str, operation_id: str, order: tuple[str, ...] = ("id", "type", "payload")
    ) -> str:
        """The `kind` message (graphql-transport-ws `next`, legacy `data`) carrying this data
        for `operation_id`, its keys in `order`, as Strawberry's transports encode it; built
        once per kind, id and order (subscribers often share their ids)."""
        try:
            frames = self._frames
        except AttributeError:
            frames = self._frames = {}
        key = (kind, operation_id, order)
        text: str | None = frames.get(key)
        if text is None:
            values = {
                "id": json.dumps(operation_id),
                "type": json.dumps(kind),
                "payload": self.payload_json(),
            }
            text = frames[key] = "{" + ",".join(f'"{name}":{values[name]}' for name in order) + "}"
        return text


def shared_by(payload: object) -> object | None:
    """The object a subscription payload's result may be shared on (None: not shared)."""
    return getattr(payload, "shared_by", None)


class _Finished:
    """The per-event "executor" of a subscriber whose result another subscriber already
    computed: its operation is that result."""

    __slots__ = ("result",)

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self.result


# The executor of the subscription whose resolver runs now (see cancellable_iterable).
SUBSCRIPTION_EXECUTOR: ContextVar[FanOutExecutor | None] = ContextVar(
    "rendertrack_subscription_executor", default=None
)


class FanOutExecutor(SchemaHintsExecutor):
    def cancellable_iterable(self, iterable: AsyncIterable[T]) -> AsyncIterable[T]:
        """graphql-core calls this once per subscription, in the operation's task, after the
        resolver returned its generator and before the generator's body runs: the body finds
        its executor here (for its express lane, gql/express.py)."""
        SUBSCRIPTION_EXECUTOR.set(self)
        return super().cancellable_iterable(iterable)

    def result_now(self, payload: Any) -> ExecutionResult | None:
        """The shared result of the event `payload` if it is ready or computes without waiting;
        None otherwise (an execution that must wait is started and shared as usual, for the
        subscribers that take the usual way)."""
        owner = shared_by(payload)
        if owner is None:
            return None
        executor = self.build_per_event_executor(payload)
        if isinstance(executor, _Finished):
            return executor.result
        key = getattr(executor, "_share_key", None)
        results = owner.__dict__.get(_RESULTS)
        if key is None or (results is not None and key in results):
            return None  # being computed by another subscriber
        outcome = executor.execute_operation(False)
        if isinstance(outcome, ExecutionResult):
            return outcome
        outcome.cancel()  # the shield: the shared execution runs on without it
        return None

    def build_per_event_executor(self, payload: Any) -> Any:
        owner = shared_by(payload)
        if owner is None:
            return super().build_per_event_executor(payload)
        key = getattr(self, "_share_key", None)
        if key is None:
            key = self._share_key = _request_key(self)
        results = owner.__dict__.get(_RESULTS)
        future = None if results is None else results.get(key)
        if (
            future is not None
            and future.done()
            and not future.cancelled()
            and future.exception() is None
        ):
            return _Finished(future.result())
        executor = super().build_per_event_executor(payload)
        executor._share_key = key
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        owner = shared_by(self.root_value)
        key: Hashable | None = getattr(self, "_share_key", None)
        if owner is None or key is None:
            return super().execute_operation(serially)
        results: dict[Hashable, asyncio.Future[ExecutionResult]] = owner.__dict__.setdefault(
            _RESULTS, {}
        )
        future = results.get(key)
        if future is None:
            outcome = super().execute_operation(serially)
            if not self.is_awaitable(outcome):
                outcome = _shareable(outcome)
                done = asyncio.get_running_loop().create_future()
                done.set_result(outcome)
                results[key] = done
                return outcome
            future = results[key] = asyncio.ensure_future(_awaited(outcome))
        return asyncio.shield(future)


async def _awaited(outcome: Awaitable[ExecutionResult]) -> ExecutionResult:
    return _shareable(await outcome)


def _shareable(result: ExecutionResult) -> ExecutionResult:
    """The result with its data as SharedData, so that its JSON is encoded once."""
    if isinstance(result, ExecutionResult) and type(result.data) is dict:
        result.data = SharedData(result.data)
    return result


def _request_key(executor: Any) -> Hashable:
    """What the result of one event depends on besides the event: the document, the operation,
    the variables and who asks."""
    operation = executor.operation
    source = operation.loc.source.body if operation.loc is not None else repr(operation)
    name = operation.name.value if operation.name else None
    variables = json.dumps(executor.variable_values, sort_keys=True, default=str)
    actor = getattr(executor.context_value, "actor", None)
    who = None if actor is None else (actor.id, actor.role.value)
    return (source, name, variables, who)
