"""The harness's handle on a process of websocket subscribers (bench/fanout_client.py): each
follows one job with `jobUpdated` over graphql-transport-ws.

    clients = Subscribers(folder, index)
    await clients.start({"url": ws_url, "token": token, "jobs": [job ids], "timeout": 60})
    ready = await clients.receive(120)      # {"ready": n, "seconds": s, "snapshots": {job: seq}}
    await clients.send({"finish": {job: sequence}, "timeout": 60})
    done = await clients.receive(120)       # {"received": true/false, "last_receive": t}
    await clients.send({"close": True}); await clients.receive(60)
    records = clients.records()             # what each subscriber received, with times
    await clients.stop()                    # or kill() to drop every socket at once
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.server import cpu_seconds, rss_kib, stop_process


class Subscribers:
    """One subscriber process."""

    def __init__(self, folder: Path, index: int) -> None:
        self.results = folder / f"subscribers{index}.json"
        self.log = folder / f"subscribers{index}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, config: dict[str, Any]) -> None:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.fanout_client",
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        await self.send({**config, "results": str(self.results)})

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()

    async def receive(self, within: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"the subscriber process ended:\n{tail}")
        return json.loads(line)

    def records(self) -> list[dict[str, Any]]:
        return json.loads(self.results.read_text())

    def cpu(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def rss_kib(self) -> int:
        assert self.process is not None
        return rss_kib(self.process.pid)

    async def stop(self) -> None:
        """SIGKILL: every socket it holds drops at once, with no close frame."""
        await stop_process(self.process, polite=False)
