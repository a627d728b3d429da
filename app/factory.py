"""The Starlette application: routes, middleware and lifespan, wired in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute

from app.body_limit import BodySizeLimit
from app.database import open_database
from app.health import healthz
from app.pages import page_routes
from app.settings import Settings
from compat.routes import PREFIX as NEXRENDER_PREFIX
from compat.routes import routes as nexrender_routes
from gql.limits import MAX_BODY_BYTES
from gql.view import RendertrackGraphQL
from service import settings as service_settings
from service.bus import create_bus
from service.events import set_publisher
from service.sweeper import run_sweeper

logger = logging.getLogger(__name__)

# A round in progress finishes its current job; past this the shutdown does not wait for it.
SWEEPER_STOP_TIMEOUT = 10.0


def create_app(
    settings: Settings | None = None, *, manage_database: bool = True, run_duties: bool = True
) -> Starlette:
    """`manage_database=False` leaves opening the database to the caller (tests that already
    hold one); `run_duties=False` starts no sweeper (tests that run its rounds themselves)."""
    settings = settings or Settings.from_env()
    graphql = RendertrackGraphQL(
        public_introspection=settings.public_introspection,
        allowed_origins=settings.allowed_origins,
        max_connections_per_user=settings.max_connections_per_user,
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        max_query_cost=settings.max_query_cost,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        previous = service_settings.configure(settings.service_settings())
        async with AsyncExitStack() as stack:
            stack.callback(service_settings.configure, previous)
            if manage_database:
                await stack.enter_async_context(open_database(settings.database_url))
            bus = create_bus(settings.database_url)
            await bus.start()
            stack.push_async_callback(bus.stop)
            stack.callback(set_publisher, set_publisher(bus))
            app.state.bus = bus
            bus.on_revocation(graphql.connections.revoke)
            await stack.enter_async_context(_running(graphql.connections.recheck_forever()))
            if run_duties:
                await stack.enter_async_context(sweeping(settings.sweep_interval_seconds))
            yield

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Mount(NEXRENDER_PREFIX, routes=nexrender_routes(health=healthz)),
            *page_routes(),
        ],
        middleware=[Middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


@asynccontextmanager
async def sweeping(interval_seconds: float) -> AsyncIterator[None]:
    """The sweeper task, for as long as the app runs; stopped and awaited at shutdown."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_sweeper(interval_seconds, stop), name="sweeper")
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=SWEEPER_STOP_TIMEOUT)
        except TimeoutError:
            logger.warning("The sweeper did not stop in %.0f s; cancelled", SWEEPER_STOP_TIMEOUT)


@asynccontextmanager
async def _running(work: Coroutine[object, object, None]) -> AsyncIterator[None]:
    """A background task for as long as the app runs, cancelled at shutdown."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app_from_env() -> Starlette:
    """uvicorn's factory entry point (`--workers N` imports it in each worker process)."""
    return create_app(Settings.from_env())
