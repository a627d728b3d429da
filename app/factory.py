"""The Starlette application: routes, middleware and lifespan, wired in one place.

A stop (SIGTERM or SIGINT, which uvicorn handles) is graceful: the app sees the signal before
uvicorn does, lets the queries and mutations running on websockets finish (a few seconds at
most), closes every websocket with 1001 "going away" (clients reconnect, to another process),
and only then hands the signal to uvicorn, which stops listening, lets the HTTP requests in
flight finish and runs the lifespan's shutdown (the sweeper, then the bus). Left to itself,
uvicorn would close the websockets with 1012 at the same moment it stops listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import FrameType
from typing import Any, NoReturn

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute

from app.body_limit import BodySizeLimit
from app.collector import tune_collector
from app.database import open_database
from app.health import database_health, healthz, readyz
from app.logs import OpenWebsockets, RequestLog
from app.metrics import forget_this_process, metrics_endpoint, multiprocess_directory
from app.pages import page_routes
from app.settings import Settings
from compat.routes import PREFIX as NEXRENDER_PREFIX
from compat.routes import routes as nexrender_routes
from gql.direct_ws import DirectWrites
from gql.limits import MAX_BODY_BYTES
from gql.view import RendertrackGraphQL
from gql.ws_handlers import operations_finished
from service import settings as service_settings
from service import users
from service.bus import PostgresBus, create_bus
from service.events import set_publisher
from service.sweeper import run_sweeper

logger = logging.getLogger(__name__)

# A round in progress finishes its current job; past this the shutdown does not wait for it.
SWEEPER_STOP_TIMEOUT = 10.0
# At a stop: how long queries and mutations running on websockets may take to finish, and how
# long closing the websockets may take, before uvicorn is told to stop anyway.
WEBSOCKET_OPERATIONS_TIMEOUT = 5.0
WEBSOCKET_CLOSE_TIMEOUT = 2.0
# What `rendertrack serve` gives the HTTP requests in flight at a stop (uvicorn's
# timeout_graceful_shutdown), below the usual 30 s before a supervisor kills the process.
GRACEFUL_SHUTDOWN_SECONDS = 20
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def create_app(
    settings: Settings | None = None,
    *,
    manage_database: bool = True,
    run_duties: bool = True,
    own_process: bool = False,
) -> Starlette:
    """`manage_database=False` leaves opening the database to the caller (tests that already
    hold one); `run_duties=False` starts no sweeper (tests that run its rounds themselves);
    `own_process=True` (a server process, not a test's) tunes the garbage collector once the
    app has started (app/collector.py)."""
    settings = settings or Settings.from_env()
    graphql = RendertrackGraphQL(
        public_introspection=settings.public_introspection,
        allowed_origins=settings.allowed_origins,
        max_connections_per_user=settings.max_connections_per_user,
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        max_query_cost=settings.max_query_cost,
    )
    websockets = OpenWebsockets()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        previous = service_settings.configure(settings.service_settings())
        async with AsyncExitStack() as stack:
            stack.callback(service_settings.configure, previous)
            stack.callback(forget_this_process)
            if manage_database:
                await stack.enter_async_context(open_database(settings.database_url))
            bus = create_bus(settings.database_url)
            await bus.start()
            stack.push_async_callback(bus.stop)
            stack.callback(set_publisher, set_publisher(bus))
            app.state.bus = bus
            bus.on_revocation(graphql.connections.revoke)
            if isinstance(bus, PostgresBus):
                # Tokens are remembered while every revocation reaches this process at commit.
                bus.on_revocation(users.tokens.revoke)
                users.tokens.enable(lambda: bus.listen_backend_pid is not None)
                stack.callback(users.tokens.disable)
            await stack.enter_async_context(_running(graphql.connections.recheck_forever()))
            stack.callback(graphql.connections.stop)
            if run_duties:
                await stack.enter_async_context(sweeping(settings.sweep_interval_seconds))
            stack.enter_context(_draining_before_uvicorn_stops(app, websockets))
            if own_process:
                tune_collector()
            yield

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint(settings.metrics_token), methods=["GET"]),
            # Every method reaches the view, which refuses the others with a coded 405.
            Route(
                "/graphql",
                graphql,
                methods=["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"],
            ),
            WebSocketRoute("/graphql", graphql),
            Mount(NEXRENDER_PREFIX, routes=nexrender_routes(health=database_health)),
            *page_routes(),
        ],
        middleware=[
            Middleware(DirectWrites),
            Middleware(RequestLog, websockets=websockets),
            Middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stopping = False
    return app


async def drain(app: Starlette, websockets: OpenWebsockets) -> None:
    """The first step of a stop: /readyz answers 503 and new websockets are refused, the
    queries and mutations running on websockets finish, and every websocket is closed with
    1001."""
    app.state.stopping = True
    websockets.stopping = True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WEBSOCKET_OPERATIONS_TIMEOUT):
            await operations_finished()
    count = len(websockets)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WEBSOCKET_CLOSE_TIMEOUT):
            await websockets.close_all()
    logger.info("Stopping: closed %d websocket(s) with 1001 (going away)", count)


SignalHandler = Callable[[int, FrameType | None], Any]


@contextlib.contextmanager
def _draining_before_uvicorn_stops(app: Starlette, websockets: OpenWebsockets) -> Iterator[None]:
    """While the app runs under a uvicorn server that handles SIGINT/SIGTERM (its `serve`
    installs its handlers before the lifespan starts): the app's handler goes first, drains,
    then hands the signal on to uvicorn's. Elsewhere (tests driving the lifespan themselves, a
    server not in the main thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    uvicorns: dict[int, SignalHandler] = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if isinstance(getattr(handler, "__self__", None), uvicorn.Server) and callable(handler):
            uvicorns[signum] = handler
    if not uvicorns:
        yield
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def stop(signum: int) -> None:
        try:
            await drain(app, websockets)
        except Exception:
            logger.exception("Closing the websockets before stopping failed")
        uvicorns[signum](signum, None)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if websockets.stopping:  # a second Ctrl-C: uvicorn's forced exit
            uvicorns[signum](signum, frame)
            return

        def start() -> None:
            task = loop.create_task(stop(signum), name="graceful-stop")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        websockets.stopping = True
        loop.call_soon_threadsafe(start)

    for signum in uvicorns:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, handler in uvicorns.items():
            if signal.getsignal(signum) is on_signal:
                signal.signal(signum, handler)


@contextlib.contextmanager
def serving_process(workers: int) -> Iterator[None]:
    """What `rendertrack serve` runs uvicorn in: the metrics' folder shared by its worker
    processes, and a clean exit after SIGTERM. uvicorn stops gracefully on SIGTERM and then
    raises the signal again for the handler it found; the default one would end the process as
    killed by the signal, where a stop that was asked for and done is a success (status 0)."""
    with multiprocess_directory(workers):
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


def _stopped(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


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
    return create_app(Settings.from_env(), own_process=True)
