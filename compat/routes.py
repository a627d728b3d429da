"""The routes of the Nexrender API, mounted under /api/v1 by app/factory.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from compat.answers import endpoint
from compat.pickup import pickup
from compat.reads import get_job, get_status, list_jobs, list_statuses
from compat.writes import create_job, delete_job, update_job

PREFIX = "/api/v1"


def routes(health: Callable[[Request], Awaitable[Response]]) -> list[BaseRoute]:
    """`health`: GET /health, answered without a secret (the app's own health check)."""
    return [
        Route("/health", health, methods=["GET"]),
        Route("/jobs", endpoint(list_jobs), methods=["GET"]),
        Route("/jobs", endpoint(create_job), methods=["POST"]),
        Route("/jobs/status", endpoint(list_statuses), methods=["GET"]),
        Route("/jobs/pickup", endpoint(pickup), methods=["GET"]),
        Route("/jobs/pickup/{tags}", endpoint(pickup), methods=["GET"]),
        Route("/jobs/{uid}/status", endpoint(get_status), methods=["GET"]),
        Route("/jobs/{uid}", endpoint(get_job), methods=["GET"]),
        Route("/jobs/{uid}", endpoint(update_job), methods=["PUT"]),
        Route("/jobs/{uid}", endpoint(delete_job), methods=["DELETE"]),
    ]
