"""One event, many subscribers: the selection of a subscription document runs once per event,
caller and variables, and every subscriber with the same ones receives that one result.

The bus hands one job object to every subscriber of an event (service/bus/core.py). A
subscriber's per-event execution keys its result on that object, with the document's text, the
operation, the variables and the caller (visibility decides what some fields show, so results
are never shared between callers). Snapshots and replays build a job object per subscriber and
are executed as usual.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Hashable
from typing import Any

from graphql import ExecutionResult

from gql.limits import SchemaHintsExecutor
from service.event_store import MEMO_PREFIX

_RESULTS = f"{MEMO_PREFIX}_results"


def shared_by(payload: object) -> object | None:
    """The object a subscription payload's result may be shared on (None: not shared)."""
    return getattr(payload, "shared_by", None)


class FanOutExecutor(SchemaHintsExecutor):
    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        if shared_by(payload) is not None and getattr(self, "_share_key", None) is None:
            self._share_key = _request_key(self)
            executor._share_key = self._share_key
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
                done = asyncio.get_running_loop().create_future()
                done.set_result(outcome)
                results[key] = done
                return outcome
            future = results[key] = asyncio.ensure_future(_awaited(outcome))
        return asyncio.shield(future)


async def _awaited(outcome: Awaitable[ExecutionResult]) -> ExecutionResult:
    return await outcome


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
