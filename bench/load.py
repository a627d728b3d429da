"""The load of a scenario, in a process of its own (never the server's, never the harness's):
`python -m bench.load` reads one JSON command on stdin, runs it, and writes one JSON result on
stdout. `run_load(command)` is the harness's side.

Kinds of command (times are time.perf_counter() seconds from the command's start):

- `drain`: `claimers` workers, each with its own HTTP connection, claim until the queue answers
  empty. `protocol` "graphql" (POST /graphql `claimJob`, Authorization: Bearer) or "pickup"
  (GET /api/v1/jobs/pickup, nexrender-secret: the Nexrender protocol, rendertrack's and
  @nexrender/server's alike). Answers every claim as (claimer, job id, start, seconds).
- `rate`: rounds one after the other, each `concurrency` clients sending one request again and
  again for `seconds`; answers each round's count, seconds, latencies and failures.
- `progress`: workers, each reporting progress `steps` on each of its jobs in turn
  (`reportProgress` with the job's lease), all at once; answers count and seconds.
- `floor`: the same reports as `progress`, as the compare-and-set UPDATE alone, sent with
  asyncpg straight to PostgreSQL (autocommit, one connection per worker).
- `sequential`: claims one at a time, rounds alternating between targets (servers on
  databases that differ in one thing); answers each round's claim latencies per target.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench.common import ROOT
from testkit.postgres import asyncpg_url

CLAIM = "mutation { claimJob { id lease status templatePath dataPath outputPath nexrenderConfig } }"
REPORT = (
    "mutation($id: ID!, $p: Int!, $lease: Int) {"
    " reportProgress(id: $id, progress: $p, lease: $lease) { id progress } }"
)
# The UPDATE of a progress report's compare-and-set (service/job_store.py), as Tortoise sends
# it: the new progress, heartbeat, sequence and updated_at, guarded by id, status and the
# sequence read.
FLOOR_UPDATE = (
    'UPDATE "jobs" SET "progress"=$1,"heartbeat_at"=$2,"sequence"=$3,"updated_at"=$4'
    ' WHERE "id"=$5 AND "status"=$6 AND "sequence"=$7'
)
MAX_FAILURES_KEPT = 10


def _client(headers: dict[str, str], timeout: float = 30.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers=headers, timeout=timeout, limits=httpx.Limits(max_connections=1)
    )


# ---------------------------------------------------------------------------------------------
# drain


async def drain(command: dict[str, Any]) -> dict[str, Any]:
    protocol, base, token = command["protocol"], command["base_url"], command["token"]
    if protocol == "graphql":
        headers = {"Authorization": f"Bearer {token}"}
    else:
        headers = {"nexrender-secret": token} if token else {}
    claims: list[tuple[int, str, float, float]] = []
    failures: list[str] = []
    empty = 0
    started = time.perf_counter()

    async def claimer(number: int) -> None:
        nonlocal empty
        async with _client(headers) as http:
            while True:
                sent = time.perf_counter()
                if protocol == "graphql":
                    answer = await http.post(f"{base}/graphql", json={"query": CLAIM})
                else:
                    answer = await http.get(f"{base}/api/v1/jobs/pickup")
                took = time.perf_counter() - sent
                job_id = _claimed(protocol, answer, failures)
                if job_id is None:
                    empty += 1
                    return
                claims.append((number, job_id, sent - started, took))

    await asyncio.gather(*(claimer(n) for n in range(int(command["claimers"]))))
    return {
        "claims": claims,
        "seconds": time.perf_counter() - started,
        "empty_answers": empty,
        "failures": failures[:MAX_FAILURES_KEPT],
        "failure_count": len(failures),
    }


def _claimed(protocol: str, answer: httpx.Response, failures: list[str]) -> str | None:
    """The claimed job's id, None when the queue is empty (or the answer is a failure, kept)."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 200 or body is None:
        failures.append(f"{answer.status_code}: {answer.text[:300]}")
        return None
    if protocol == "graphql":
        if body.get("errors"):
            failures.append(json.dumps(body["errors"])[:300])
            return None
        job = (body.get("data") or {}).get("claimJob")
        return None if job is None else str(job["id"])
    return str(body["uid"]) if body.get("uid") else None


# ---------------------------------------------------------------------------------------------
# rate


async def rate(command: dict[str, Any]) -> dict[str, Any]:
    results = []
    for round_ in command["rounds"]:
        results.append(await _rate_round(round_))
    return {"rounds": results}


async def _rate_round(round_: dict[str, Any]) -> dict[str, Any]:
    request = round_["request"]
    stop_at = time.perf_counter() + float(round_["seconds"])
    latencies: list[float] = []
    failures: list[str] = []
    failure_count = 0

    async def client() -> None:
        nonlocal failure_count
        async with _client(request.get("headers", {})) as http:
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                answer = await http.request(
                    request["method"], request["url"], json=request.get("json")
                )
                took = time.perf_counter() - sent
                bad = answer.status_code != 200 or (
                    request.get("graphql") and answer.json().get("errors")
                )
                if bad:
                    failure_count += 1
                    if len(failures) < MAX_FAILURES_KEPT:
                        failures.append(f"{answer.status_code}: {answer.text[:300]}")
                    continue
                latencies.append(took)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(int(round_["concurrency"]))))
    return {
        "name": round_["name"],
        "count": len(latencies),
        "seconds": time.perf_counter() - started,
        "latencies": latencies,
        "failures": failures,
        "failure_count": failure_count,
    }


# ---------------------------------------------------------------------------------------------
# progress and its floor


async def progress(command: dict[str, Any]) -> dict[str, Any]:
    url, steps = command["url"], command["steps"]
    failures: list[str] = []

    async def worker(jobs: list[list[Any]]) -> int:
        sent = 0
        async with _client({"Authorization": f"Bearer {command['token']}"}) as http:
            for job_id, lease in jobs:
                for step in steps:
                    variables = {"id": job_id, "p": step, "lease": lease}
                    answer = await http.post(url, json={"query": REPORT, "variables": variables})
                    body = answer.json()
                    if answer.status_code != 200 or body.get("errors"):
                        failures.append(f"{answer.status_code}: {answer.text[:300]}")
                        continue
                    sent += 1
        return sent

    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(jobs) for jobs in command["assignments"]))
    return {
        "count": sum(counts),
        "seconds": time.perf_counter() - started,
        "failures": failures[:MAX_FAILURES_KEPT],
        "failure_count": len(failures),
    }


async def floor(command: dict[str, Any]) -> dict[str, Any]:
    steps = command["steps"]
    url = asyncpg_url(command["postgres_url"])
    workers = [await asyncpg.connect(url) for _ in command["assignments"]]
    try:
        everyone = [job_id for jobs in command["assignments"] for job_id, _ in jobs]
        rows = await workers[0].fetch(
            'SELECT "id", "sequence" FROM "jobs" WHERE "id" = ANY($1::text[])', everyone
        )
        sequences = {row["id"]: row["sequence"] for row in rows}
        statement = [await connection.prepare(FLOOR_UPDATE) for connection in workers]
        lost = 0

        async def worker(number: int, jobs: list[list[Any]]) -> int:
            nonlocal lost
            sent = 0
            for job_id, _ in jobs:
                for step in steps:
                    now = datetime.now(UTC)
                    read = sequences[job_id]
                    await statement[number].fetch(
                        step, now, read + 1, now, job_id, "RENDERING", read
                    )
                    if statement[number].get_statusmsg() != "UPDATE 1":
                        lost += 1
                    sequences[job_id] = read + 1
                    sent += 1
            return sent

        started = time.perf_counter()
        counts = await asyncio.gather(
            *(worker(n, jobs) for n, jobs in enumerate(command["assignments"]))
        )
        seconds = time.perf_counter() - started
    finally:
        for connection in workers:
            await connection.close()
    return {"count": sum(counts), "seconds": seconds, "updates_matching_no_row": lost}


# ---------------------------------------------------------------------------------------------
# sequential claims, alternating targets


async def sequential(command: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, dict[str, str]] = command["targets"]
    names = list(targets)
    rounds: dict[str, list[list[float]]] = {name: [] for name in names}
    failures: list[str] = []
    clients = {
        name: _client({"Authorization": f"Bearer {target['token']}"})
        for name, target in targets.items()
    }
    try:
        for number in range(int(command["rounds"])):
            for name in names if number % 2 == 0 else names[::-1]:
                http, url = clients[name], targets[name]["url"]
                latencies = []
                for n in range(int(command["warmup"]) + int(command["per_round"])):
                    sent = time.perf_counter()
                    answer = await http.post(url, json={"query": CLAIM})
                    took = time.perf_counter() - sent
                    if _claimed("graphql", answer, failures) is None:
                        failures.append(f"{name}: no job claimed")
                        break
                    if n >= int(command["warmup"]):
                        latencies.append(took)
                rounds[name].append(latencies)
    finally:
        for http in clients.values():
            await http.aclose()
    return {"rounds": rounds, "failures": failures[:MAX_FAILURES_KEPT]}


KINDS = {
    "drain": drain,
    "rate": rate,
    "progress": progress,
    "floor": floor,
    "sequential": sequential,
}


# ---------------------------------------------------------------------------------------------
# The harness's side


async def run_load(command: dict[str, Any], within: float = 3600.0) -> dict[str, Any]:
    """Runs `command` in a load process and answers its result (within `within` seconds).

    The process is run by `subprocess.run` in a thread, with blocking reads of its output:
    asyncio's pipe transport once handed back a drain's result (over 256 KiB of JSON) with a
    chunk missing, and the scenario failed on a result the load process had written whole."""
    try:
        finished = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bench.load"],
            cwd=ROOT,
            input=json.dumps(command).encode(),
            capture_output=True,
            timeout=within,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the load process ({command['kind']}) took over {within} s") from None
    if finished.returncode != 0:
        raise RuntimeError(
            f"the load process ({command['kind']}) failed ({finished.returncode}):\n"
            + finished.stderr.decode(errors="replace")[-3000:]
        )
    return json.loads(finished.stdout)


def main() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    command = json.loads(sys.stdin.read())
    work = KINDS[command["kind"]](command)
    try:
        import uvloop

        result = uvloop.run(work)
    except ImportError:
        result = asyncio.run(work)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
