"""GET /healthz: 200 when the database answers, 503 when it does not."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.database import ping_database

HEALTH_TIMEOUT_SECONDS = 2.0
logger = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    try:
        await asyncio.wait_for(ping_database(), timeout=HEALTH_TIMEOUT_SECONDS)
    except Exception as error:  # any failure to answer means "not healthy"
        logger.warning("health check failed: %s", error)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})
