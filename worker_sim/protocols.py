"""The two ways a worker talks to rendertrack, behind one interface.

- GraphQL at /graphql with `Authorization: Bearer <token>`: `claimJob`, `appendJobLog`,
  `reportProgress`, `heartbeat`, `completeJob`, `failJob`, `requeueJob`, each report under the
  claim's `lease`.
- Nexrender's REST API under /api/v1 with `nexrender-secret: <token>`, as a stock Nexrender worker
  (1.63.x) speaks it: `GET /jobs/pickup`, then `PUT /jobs/:uid` with `started`, `render:dorender`
  and `renderProgress`, `finished` or `error`, and `queued` to hand a job back.

What the server answers is sorted into three outcomes the worker acts on:
`JobLost` (this job is no longer ours: drop it and go on), `Unreachable` (the server or the
network: try again later) and `Refused` (the token or the server will never do: stop).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

# GraphQL error codes that say "this job is not yours to report on any more" are everything but
# these: the token itself (stop), and the server's own trouble (try again).
FATAL_CODES = {"UNAUTHENTICATED"}
TRANSIENT_CODES = {"INTERNAL_SERVER_ERROR"}
# On a claim, these mean the worker cannot work at all.
FATAL_CLAIM_CODES = FATAL_CODES | {"FORBIDDEN", "GRAPHQL_VALIDATION_FAILED"}


class JobLost(Exception):
    """The server refused a report on the job: cancelled, handed to another worker, gone."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(Exception):
    """No usable answer: a network error, a timeout, a 5xx, or an internal error."""


class Refused(Exception):
    """The server will never accept this worker: a wrong token, not a WORKER, no such API."""


@dataclass
class Claim:
    id: str
    project: str
    output: str
    composition: str = "main"
    lease: int | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    job: dict[str, Any] = field(default_factory=dict)  # Nexrender: the job JSON picked up

    def describe(self) -> str:
        parts = [repr(self.project)]
        if self.attempt is not None:
            parts.append(f"attempt {self.attempt}/{self.max_attempts}")
        if self.lease is not None:
            parts.append(f"lease {self.lease}")
        return ", ".join(parts)


class Protocol(ABC):
    name: str
    retries: bool  # whether a failure can ask for a retry (GraphQL's failJob(retryable))

    def __init__(self, http: httpx.AsyncClient, token: str, worker_name: str) -> None:
        self.http = http
        self.token = token
        self.worker_name = worker_name

    @abstractmethod
    async def claim(self) -> Claim | None:
        """The next job, now this worker's; None when nothing is claimable."""

    @abstractmethod
    async def start(self, claim: Claim, lines: list[str]) -> None:
        """The render begins; `lines` are what the renderer printed first."""

    @abstractmethod
    async def progress(self, claim: Claim, percent: int, line: str) -> None: ...

    @abstractmethod
    async def heartbeat(self, claim: Claim, percent: int) -> None: ...

    @abstractmethod
    async def log(self, claim: Claim, lines: list[str]) -> None: ...

    @abstractmethod
    async def complete(self, claim: Claim) -> None: ...

    @abstractmethod
    async def fail(self, claim: Claim, error: str, retryable: bool) -> str:
        """Reports the failure; what became of the job, for the log line."""

    @abstractmethod
    async def hand_back(self, claim: Claim) -> None: ...


class GraphQLProtocol(Protocol):
    name = "graphql"
    retries = True

    CLAIM = (
        "mutation Claim { claimJob { id lease attempts maxAttempts projectName outputName "
        "outputPath nexrenderConfig } }"
    )
    START = (
        "mutation Log($id: ID!, $lines: [String!]!, $lease: Int) "
        "{ appendJobLog(id: $id, lines: $lines, lease: $lease) { id } }"
    )
    PROGRESS = (
        "mutation Progress($id: ID!, $progress: Int!, $log: String, $lease: Int) "
        "{ reportProgress(id: $id, progress: $progress, log: $log, lease: $lease) { id } }"
    )
    # `stage` is newer than the rest: a server without it refuses the request as malformed, and
    # the worker then reports without it.
    PROGRESS_WITH_STAGE = (
        "mutation Progress($id: ID!, $progress: Int!, $log: String, $lease: Int, "
        "$stage: JobStage) { reportProgress(id: $id, progress: $progress, log: $log, "
        "lease: $lease, stage: $stage) { id } }"
    )
    HEARTBEAT = "mutation Beat($id: ID!, $lease: Int) { heartbeat(id: $id, lease: $lease) { id } }"
    COMPLETE = (
        "mutation Complete($id: ID!, $lease: Int) { completeJob(id: $id, lease: $lease) { id } }"
    )
    FAIL = (
        "mutation Fail($id: ID!, $error: String!, $retryable: Boolean!, $lease: Int) "
        "{ failJob(id: $id, error: $error, retryable: $retryable, lease: $lease) "
        "{ id status attempts maxAttempts notBefore } }"
    )
    REQUEUE = "mutation Back($id: ID!, $lease: Int) { requeueJob(id: $id, lease: $lease) { id } }"

    async def claim(self) -> Claim | None:
        try:
            data = await self._call(self.CLAIM, {})
        except JobLost as refusal:  # a refused claim is not about a job: sort it again
            if refusal.code in FATAL_CLAIM_CODES:
                raise Refused(f"the server refuses this worker's claims: {refusal}") from None
            raise Unreachable(f"claimJob was refused: {refusal}") from None
        job = data.get("claimJob")
        if not job:
            return None
        if not isinstance(job, dict) or not job.get("id"):
            raise Unreachable(f"claimJob answered something that is not a job: {job!r:.200}")
        config = job.get("nexrenderConfig") or {}
        template = config.get("template") if isinstance(config, dict) else None
        composition = template.get("composition") if isinstance(template, dict) else None
        return Claim(
            id=job["id"],
            project=job.get("projectName") or job["id"],
            output=job.get("outputPath") or job.get("outputName") or "worker",
            composition=composition if isinstance(composition, str) and composition else "main",
            lease=job.get("lease"),
            attempt=job.get("attempts"),
            max_attempts=job.get("maxAttempts"),
        )

    async def start(self, claim: Claim, lines: list[str]) -> None:
        await self.log(claim, lines)

    def __init__(self, http: httpx.AsyncClient, token: str, worker_name: str) -> None:
        super().__init__(http, token, worker_name)
        self.stages = True  # until the server says it knows no `stage`

    async def progress(self, claim: Claim, percent: int, line: str) -> None:
        if self.stages:
            try:
                await self._report(
                    self.PROGRESS_WITH_STAGE, claim, progress=percent, log=line, stage="RENDERING"
                )
                return
            except JobLost as refusal:
                if refusal.code != "GRAPHQL_VALIDATION_FAILED":
                    raise
                self.stages = False
        await self._report(self.PROGRESS, claim, progress=percent, log=line)

    async def heartbeat(self, claim: Claim, percent: int) -> None:
        await self._report(self.HEARTBEAT, claim)

    async def log(self, claim: Claim, lines: list[str]) -> None:
        await self._report(self.START, claim, lines=lines)

    async def complete(self, claim: Claim) -> None:
        await self._report(self.COMPLETE, claim)

    async def fail(self, claim: Claim, error: str, retryable: bool) -> str:
        data = await self._report(self.FAIL, claim, error=error, retryable=retryable)
        job = data.get("failJob") or {}
        if job.get("status") == "QUEUED":
            return f"queued again (attempt {job.get('attempts')}/{job.get('maxAttempts')})"
        return str(job.get("status", "FAILED"))

    async def hand_back(self, claim: Claim) -> None:
        await self._report(self.REQUEUE, claim)

    async def _report(self, query: str, claim: Claim, **variables: Any) -> dict[str, Any]:
        return await self._call(query, {"id": claim.id, "lease": claim.lease, **variables})

    async def _call(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.http.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError as error:
            raise Unreachable(_describe(error)) from None
        if response.status_code >= 500:
            raise Unreachable(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise Unreachable(f"HTTP {response.status_code}, not JSON") from None
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = (first.get("extensions") or {}).get("code") or f"HTTP {response.status_code}"
            message = f"{code}: {first.get('message', '')}".strip()
            if code in FATAL_CODES:
                raise Refused(message)
            if code in TRANSIENT_CODES:
                raise Unreachable(message)
            raise JobLost(message, code)
        if response.status_code >= 400 or not isinstance(body, dict):
            raise Unreachable(f"HTTP {response.status_code}")
        return body.get("data") or {}


class NexrenderProtocol(Protocol):
    name = "nexrender"
    retries = False
    PREFIX = "/api/v1"

    async def claim(self) -> Claim | None:
        try:
            response = await self.http.get(f"{self.PREFIX}/jobs/pickup", headers=self._headers())
        except httpx.HTTPError as error:
            raise Unreachable(_describe(error)) from None
        if response.status_code in (401, 403):
            raise Refused(f"the server refuses the nexrender-secret (HTTP {response.status_code})")
        if response.status_code == 404:
            raise Refused(f"no Nexrender API at {self.PREFIX}/jobs/pickup (HTTP 404)")
        if response.status_code != 200:
            raise Unreachable(f"GET {self.PREFIX}/jobs/pickup: HTTP {response.status_code}")
        try:
            job = response.json() if response.content.strip() else {}
        except ValueError:
            raise Unreachable("GET /jobs/pickup answered something that is not JSON") from None
        if not isinstance(job, dict) or not job.get("uid"):
            return None  # `{}`: nothing to pick up
        template = job.get("template") if isinstance(job.get("template"), dict) else {}
        composition = template.get("composition")
        return Claim(
            id=str(job["uid"]),
            project=str(job.get("tags") or template.get("src") or job["uid"]),
            output=str(job.get("output") or "worker"),
            composition=composition if isinstance(composition, str) and composition else "main",
            job=job,
        )

    async def start(self, claim: Claim, lines: list[str]) -> None:
        # A stock worker PUTs the whole job back as `started`; Nexrender keeps no log.
        await self._put(claim, {**claim.job, "state": "started"})

    async def progress(self, claim: Claim, percent: int, line: str) -> None:
        await self._put(claim, self._status(claim, "render:dorender", renderProgress=percent))

    async def heartbeat(self, claim: Claim, percent: int) -> None:
        # Nexrender has no heartbeat: the same state and percentage again renews the lease.
        await self.progress(claim, percent, "")

    async def log(self, claim: Claim, lines: list[str]) -> None:
        return None  # the protocol carries no log lines

    async def complete(self, claim: Claim) -> None:
        await self._put(claim, self._status(claim, "finished", renderProgress=100))

    async def fail(self, claim: Claim, error: str, retryable: bool) -> str:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stored = await self._put(claim, self._status(claim, "error", error=error, errorAt=now))
        state = stored.get("state") if isinstance(stored, dict) else None
        return f"state {state}" if state else "error"

    async def hand_back(self, claim: Claim) -> None:
        await self._put(claim, self._status(claim, "queued"))

    def _status(self, claim: Claim, state: str, **fields: Any) -> dict[str, Any]:
        """The status-shaped body a 1.63.x worker sends."""
        body = {"uid": claim.id, "state": state, "type": claim.job.get("type", "default")}
        if "tags" in claim.job:
            body["tags"] = claim.job["tags"]
        return {**body, **fields}

    async def _put(self, claim: Claim, body: dict[str, Any]) -> Any:
        path = f"{self.PREFIX}/jobs/{claim.id}"
        try:
            response = await self.http.put(path, json=body, headers=self._headers())
        except httpx.HTTPError as error:
            raise Unreachable(_describe(error)) from None
        if response.status_code >= 500:
            raise Unreachable(f"PUT {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise JobLost(f"PUT {body['state']}: HTTP {response.status_code} {_excerpt(response)}")
        try:
            return response.json() if response.content.strip() else {}
        except ValueError:
            return {}

    def _headers(self) -> dict[str, str]:
        return {"nexrender-secret": self.token, "nexrender-name": self.worker_name}


def protocol_for(name: str, http: httpx.AsyncClient, token: str, worker: str) -> Protocol:
    kinds: dict[str, type[Protocol]] = {"graphql": GraphQLProtocol, "nexrender": NexrenderProtocol}
    return kinds[name](http, token, worker)


def _describe(error: httpx.HTTPError) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _excerpt(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if body.get(key):
                return str(body[key])[:200]
    return str(body)[:200]
