"""Probes for whoever runs the server.

- GET /healthz, liveness: 200 while the process serves requests. It touches nothing else, so
  an outage of the database does not get every server process restarted.
- GET /readyz, readiness: 200 when this process can do its work: the database answers and, on
  PostgreSQL, the event bus LISTENs (without it, live events reach subscribers only by the
  dispatcher's polling). 503 with a JSON body naming what is down, also while the server is
  stopping.
- `database_health` answers the Nexrender API's GET /api/v1/health: 200 while the database
  answers (Nexrender workers ask it before they poll for jobs).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.database import ping_database
from service.bus import PostgresBus

HEALTH_TIMEOUT_SECONDS = 2.0
logger = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    down: dict[str, str] = {}
    if getattr(request.app.state, "stopping", False):
        down["server"] = "stopping"
    if not await _database_answers():
        down["database"] = "unreachable"
    bus = getattr(request.app.state, "bus", None)
    if isinstance(bus, PostgresBus) and bus.listen_backend_pid is None:
        down["event_bus"] = "not listening (LISTEN connection down, reconnecting)"
    if down:
        return JSONResponse({"status": "unavailable", **down}, status_code=503)
    return JSONResponse({"status": "ok"})


async def database_health(request: Request) -> JSONResponse:
    if not await _database_answers():
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def _database_answers() -> bool:
    try:
        await asyncio.wait_for(ping_database(), timeout=HEALTH_TIMEOUT_SECONDS)
    except Exception as error:  # any failure to answer means "not ready"
        logger.warning("readiness check: the database does not answer: %s", error)
        return False
    return True
