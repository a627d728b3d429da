"""The pages a browser loads: the dashboard at `/` and the files under `/static` (the
dashboard's modules and GraphiQL's vendored assets). Nothing here needs a token: the pages ask
for one and send it to the API themselves."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"
DASHBOARD_PAGE = STATIC_DIRECTORY / "dashboard" / "index.html"
# The pages load nothing from another origin and may not be framed by one.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def dashboard(request: Request) -> Response:
    return FileResponse(DASHBOARD_PAGE, media_type="text/html", headers=PAGE_HEADERS)


class PageFiles(StaticFiles):
    """The files under /static, each answered with the pages' headers: a page reached by its
    file's own address (/static/dashboard/index.html) is as closed to framing and to other
    origins as at `/`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def page_routes() -> list[BaseRoute]:
    return [
        Route("/", dashboard, methods=["GET", "HEAD"]),
        Mount("/static", app=PageFiles(directory=STATIC_DIRECTORY), name="static"),
    ]
