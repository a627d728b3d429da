"""Websocket subscribers in a process of their own (scenarios screen, progress, memory,
processes): many websockets, one `jobUpdated` subscription each.

Run through bench/subscribers.py as `python -m bench.fanout_client`, it talks JSON lines: its
configuration on stdin, then `ready` on stdout once every subscriber has its SNAPSHOT; on
`{"finish": {job_id: sequence}}` it waits until each subscriber has received its job's
`sequence` (or the timeout), says `received`, and on `close` writes what each subscriber
received, with the wall time (time.time()) of each message, to the results file and exits.

Configuration: url (ws://), token, jobs (one job id per subscriber), results (a file path),
timeout (seconds, bounds every wait), connect_concurrency, compression (offer
permessage-deflate; default true).

The websockets are bench/ws_wire.py's: a message costs this process a few microseconds, so that
a thousand subscribers measure the server, not the client sharing its cores. Each message's
receive time is taken when its bytes arrive, before any parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench import ws_wire

PROTOCOL = "graphql-transport-ws"
JOB_UPDATED = """
subscription($id: ID!) { jobUpdated(id: $id) { kind sequence job { id status progress } } }
"""


class Subscriber:
    def __init__(self, index: int, job_id: str) -> None:
        self.index = index
        self.job_id = job_id
        self.client: ws_wire.WireClient | None = None
        self.snapshot: int | None = None
        # (sequence, kind, progress, receive time) of every result after the snapshot
        self.received: list[tuple[int, str, int, float]] = []
        self.last = -1
        self.problems: list[str] = []
        self.ended = False
        self.progressed = asyncio.Event()
        # Until the snapshot, messages are awaited in order; then each is handled as it arrives.
        self._setup: asyncio.Queue[str] | None = asyncio.Queue()

    async def open(self, url: str, token: str, within: float, compression: bool) -> None:
        async with asyncio.timeout(within):
            self.client = await ws_wire.connect(
                url, PROTOCOL, self._on_message, compression=compression, within=within
            )
            self._send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
            ack = await self._receive()
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"subscriber {self.index}: no connection_ack but {ack}")
            self._send(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": JOB_UPDATED, "variables": {"id": self.job_id}},
                }
            )
            first = await self._receive()
            event = _event(first)
            if event is None or event["kind"] != "SNAPSHOT":
                raise RuntimeError(f"subscriber {self.index}: no SNAPSHOT but {first}")
            self.snapshot = self.last = int(event["sequence"])
            self._setup = None

    def _send(self, message: dict[str, Any]) -> None:
        assert self.client is not None
        self.client.send_text(json.dumps(message))

    async def _receive(self) -> dict[str, Any]:
        assert self._setup is not None and self.client is not None
        while True:
            getting = asyncio.ensure_future(self._setup.get())
            done, _ = await asyncio.wait(
                {getting, self.client.closed}, return_when=asyncio.FIRST_COMPLETED
            )
            if getting not in done:
                getting.cancel()
                raise RuntimeError(f"subscriber {self.index}: {self.client.closed.result()}")
            message = json.loads(getting.result())
            if message.get("type") == "ping":
                self._send({"type": "pong"})
                continue
            if message.get("type") != "pong":
                return message

    def _on_message(self, raw: str, at: float) -> None:
        """Every message; `at` is when its bytes arrived (before any parsing)."""
        if self._setup is not None:
            self._setup.put_nowait(raw)
            return
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "ping":
            self._send({"type": "pong"})
            return
        if kind == "pong":
            return
        event = _event(message)
        if event is None:
            self.problems.append(f"unexpected message {str(message)[:300]}")
            if kind in {"complete", "error"}:
                self.ended = True
                self.progressed.set()
            return
        sequence = int(event["sequence"])
        self.received.append((sequence, event["kind"], event["job"]["progress"], at))
        self.last = max(self.last, sequence)
        self.progressed.set()

    async def read_forever(self) -> None:
        """Messages are recorded as they arrive (_on_message); this waits for the end."""
        assert self.client is not None
        reason = await asyncio.shield(self.client.closed)  # cancelling this leaves it be
        if not self.ended:
            self.problems.append(f"connection closed by the server: {reason}")
            self.ended = True
            self.progressed.set()

    async def wait_for(self, sequence: int) -> bool:
        while self.last < sequence and not self.ended:
            self.progressed.clear()
            await self.progressed.wait()
        return self.last >= sequence

    async def close(self) -> None:
        client = self.client
        if client is None:
            return
        self.ended = True  # closing it ourselves is no problem to record
        with contextlib.suppress(Exception):
            self._send({"id": "1", "type": "complete"})
            client.close()
            async with asyncio.timeout(5):
                await asyncio.shield(client.closed)
        if client.transport is not None:
            client.transport.abort()

    def record(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "snapshot": self.snapshot,
            "received": self.received,
            "problems": self.problems,
        }


def _event(message: dict[str, Any]) -> dict[str, Any] | None:
    if message.get("type") != "next":
        return None
    payload = message.get("payload") or {}
    if payload.get("errors"):
        return None
    return (payload.get("data") or {}).get("jobUpdated")


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _command(within: float) -> dict[str, Any]:
    async with asyncio.timeout(within):
        line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise RuntimeError("the harness went away")
    return json.loads(line)


async def run(config: dict[str, Any]) -> int:
    timeout = float(config["timeout"])
    subscribers = [Subscriber(index, job_id) for index, job_id in enumerate(config["jobs"])]
    gate = asyncio.Semaphore(int(config.get("connect_concurrency", 50)))

    async def open_one(subscriber: Subscriber) -> None:
        async with gate:
            await subscriber.open(
                config["url"], config["token"], timeout, bool(config.get("compression", True))
            )

    readers: list[asyncio.Task[None]] = []
    try:
        started = time.perf_counter()
        await asyncio.gather(*(open_one(subscriber) for subscriber in subscribers))
        readers = [asyncio.create_task(subscriber.read_forever()) for subscriber in subscribers]
        _say(
            {
                "ready": len(subscribers),
                "seconds": round(time.perf_counter() - started, 3),
                "snapshots": {s.job_id: s.snapshot for s in subscribers},
            }
        )
        command = await _command(timeout * 4)
        finish: dict[str, int] = command["finish"]
        complete = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(command.get("timeout", timeout))):
                results = await asyncio.gather(
                    *(subscriber.wait_for(finish[subscriber.job_id]) for subscriber in subscribers)
                )
                complete = all(results)
        last = max((s.received[-1][3] for s in subscribers if s.received), default=None)
        _say({"received": complete, "last_receive": last})
        await _command(timeout)  # close
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*(subscriber.close() for subscriber in subscribers))
    records = json.dumps([subscriber.record() for subscriber in subscribers])
    await asyncio.to_thread(Path(config["results"]).write_text, records)
    _say({"closed": True})
    return 0


def main() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    config = json.loads(sys.stdin.readline())
    try:
        import uvloop

        return uvloop.run(run(config))
    except ImportError:
        return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
