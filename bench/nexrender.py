"""The peer of the claims scenario: `@nexrender/server` 1.38.0, the server Nexrender's workers
talk to, installed with npm into .cache/npm-nexrender-server (testkit/npm.py, pinned by
bench/nexrender/package.json) and served on loopback by bench/nexrender/serve.cjs (the package's
own handler, as its bin serves it). It keeps every job in one JSON file (NEXRENDER_DATABASE) and
writes the whole file again after each change, so its cost grows with its file: each run gets a
fresh file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT
from bench.server import free_port, stop_process
from testkit import npm

PACKAGE_JSON = ROOT / "bench" / "nexrender" / "package.json"
SERVE = ROOT / "bench" / "nexrender" / "serve.cjs"
CACHE_NAME = "npm-nexrender-server"
START_TIMEOUT = 30.0
SECRET = "bench-secret"
RUNS = itertools.count(1)

# One Nexrender job, as a client POSTs it (and as rendertrack's rows carry it).
JOB: dict[str, Any] = {
    "template": {
        "src": "https://assets.example.com/templates/promo.aep",
        "composition": "main",
    },
    "assets": [
        {"type": "data", "layerName": "title", "property": "Source Text", "value": "Promo 2026"},
        {"type": "image", "src": "https://assets.example.com/logo.png", "layerName": "logo"},
    ],
    "actions": {
        "postrender": [
            {"module": "@nexrender/action-encode", "preset": "mp4", "output": "encoded.mp4"}
        ]
    },
}


def install() -> tuple[str, Path]:
    """(node, the folder whose node_modules hold the package); raises npm.NpmUnavailable or
    npm.NpmFailed."""
    return npm.install(PACKAGE_JSON, CACHE_NAME, "--ignore-scripts")


def installed_versions(folder: Path) -> dict[str, str]:
    versions = {}
    for name in ("@nexrender/server", "@nexrender/types", "micro"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            manifest = folder / "node_modules" / name / "package.json"
            versions[name] = json.loads(manifest.read_text())["version"]
    return versions


class Peer:
    """One run of @nexrender/server on a fresh database file."""

    def __init__(self, node: str, folder: Path, scratch: Path) -> None:
        run = next(RUNS)
        self.node = node
        self.folder = folder
        self.port = free_port()
        self.database = scratch / f"nexrender-{run}.json"
        self.log = scratch / f"nexrender-{run}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self.database.unlink(missing_ok=True)
        env = {
            **os.environ,
            "NODE_PATH": str(self.folder / "node_modules"),
            "NEXRENDER_DATABASE": str(self.database),
            "NODE_ENV": "production",
        }
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                self.node,
                str(SERVE),
                str(self.port),
                SECRET,
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"@nexrender/server exited:\n{self.log_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base_url}/api/v1/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"@nexrender/server did not answer in {START_TIMEOUT} s")

    async def stop(self) -> None:
        await stop_process(self.process, polite=False)

    async def submit(self, count: int, concurrency: int = 8) -> float:
        """POSTs `count` jobs (the secret in `nexrender-secret`); answers the seconds taken."""
        numbers = iter(range(count))
        started = time.perf_counter()

        async def client() -> None:
            async with httpx.AsyncClient(headers={"nexrender-secret": SECRET}, timeout=60) as http:
                for n in numbers:
                    job = {**JOB, "uid": f"bench{n:08d}"}
                    answer = await http.post(f"{self.base_url}/api/v1/jobs", json=job)
                    if answer.status_code != 200:
                        raise RuntimeError(f"POST /api/v1/jobs: {answer.status_code} {answer.text}")

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - started

    async def states(self) -> dict[str, int]:
        """Jobs per state, as the server lists them."""
        async with httpx.AsyncClient(headers={"nexrender-secret": SECRET}, timeout=60) as http:
            answer = await http.get(f"{self.base_url}/api/v1/jobs")
        counts: dict[str, int] = {}
        for job in answer.json():
            counts[job["state"]] = counts.get(job["state"], 0) + 1
        return counts

    def database_bytes(self) -> int:
        try:
            return self.database.stat().st_size
        except OSError:
            return 0

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
