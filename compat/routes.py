"""The routes of the Nexrender API, mounted under /api/v1 by app/factory.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from compat.answers import answer, endpoint
from compat.pickup import pickup
from compat.reads import get_job, get_status, list_jobs, list_statuses
from compat.writes import create_job, delete_job, update_job

PREFIX = "/api/v1"


def routes(health: Callable[[Request], Awaitable[Response]]) -> list[BaseRoute]:
    """`health`: GET /health, answered without a secret (the app's own health check)."""
    known = [
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
    return [*known, Route("/{rest:path}", _unknown(known), methods=_EVERY_METHOD)]


_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _unknown(known: list[Route]) -> Callable[[Request], Awaitable[Response]]:
    """Anything else, answered in JSON like every refusal: 405 (with Allow) for a known path
    asked with another method, else 404."""

    async def unknown(request: Request) -> Response:
        # Inside the mount, root_path ends with the prefix and path still holds it.
        path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
        inner = path[len(root) :] if root and path.startswith(root) else path
        allowed = sorted(
            {
                method
                for route in known
                if route.path_regex.fullmatch(inner)
                for method in route.methods or ()
            }
        )
        if allowed:
            refused = answer(
                {"error": f"{request.method} is not allowed here.", "code": "METHOD_NOT_ALLOWED"},
                405,
            )
            refused.headers["Allow"] = ", ".join(allowed)
            return refused
        return answer({"error": "No such endpoint.", "code": "NOT_FOUND"}, 404)

    return unknown
