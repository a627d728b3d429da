"""The `rendertrack` command line: serve, migrate, and manage users.

Anything a script captures goes to stdout (a new token, alone on its line); every message for a
person goes to stderr. A failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from app.database import open_database, prepare_database_location, redact
from app.jobs_cli import add_job_commands
from app.migrations import apply_migrations, pending_model_changes
from app.settings import ENVIRONMENT_HELP, Settings
from app.sqlite_lock import SQLiteInUse, hold_server_lock
from domain.errors import BadUserInput, DomainError
from domain.status import Role
from domain.users import normalize_email
from models import User
from models.config import is_postgres
from service import users
from service.bus import create_bus
from service.events import set_publisher
from worker_sim.options import add_arguments as add_simulator_arguments
from worker_sim.options import options_of as simulator_options

T = TypeVar("T")

BOOTSTRAP_ADMIN_EMAIL = "admin@example.com"
EXIT_FAILURE = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings) or 0)
    except DomainError as error:
        return _fail(error.message)
    except ValueError as error:  # bad configuration, e.g. RENDERTRACK_PORT
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the database or the network: one line, no traceback
        url = redact(os.environ.get("RENDERTRACK_DATABASE_URL", "") or "the database")
        return _fail(f"{type(error).__name__} while talking to {url}: {error}".strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rendertrack",
        description="A render-job tracker for Nexrender pipelines.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="migrate the database, then serve the API",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to listen on (default: $RENDERTRACK_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default: $RENDERTRACK_PORT)")
    serve.add_argument("--workers", type=_positive_int, default=1, help="server processes")
    serve.add_argument(
        "--admin-email",
        metavar="E",
        help="address of the ADMIN created on an empty database, whose token is printed once "
        f"(default: $RENDERTRACK_ADMIN_EMAIL, else {BOOTSTRAP_ADMIN_EMAIL}); "
        "ignored once the database has users",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when models/ have changes that no migration records",
    )
    migrate.set_defaults(handler=_migrate)

    user_commands = commands.add_parser("users", help="manage users").add_subparsers(
        dest="users_command", required=True, metavar="COMMAND"
    )
    create = user_commands.add_parser(
        "create", help="create a user and print its API token (alone on stdout)"
    )
    create.add_argument("--email", required=True)
    create.add_argument("--name")
    create.add_argument(
        "--role", default="user", type=str.lower, choices=[role.value.lower() for role in Role]
    )
    create.set_defaults(handler=_users_create)
    user_commands.add_parser("list", help="list users").set_defaults(handler=_users_list)
    rotate = user_commands.add_parser(
        "rotate-token",
        help="give a user a new API token (alone on stdout); the old one stops working",
    )
    rotate.add_argument("--email", required=True)
    rotate.set_defaults(handler=_users_rotate_token)
    deactivate = user_commands.add_parser(
        "deactivate", help="deactivate a user: its token stops working, its jobs stay"
    )
    deactivate.add_argument("--email", required=True)
    deactivate.set_defaults(handler=_users_deactivate)

    add_job_commands(commands, _with_database)

    simulate = commands.add_parser(
        "simulate-worker",
        help="a render worker without After Effects: claims jobs and reports progress over HTTP",
        description="Claims jobs and renders them on the clock, reporting progress, heartbeats, "
        "completions and failures as a real worker does; hands its jobs back on SIGINT/SIGTERM. "
        "A client only: it needs the server's URL and a WORKER's token, not the database.",
    )
    add_simulator_arguments(simulate)
    simulate.set_defaults(handler=_simulate_worker)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    admin_email = _admin_email(args, settings)  # checked before the database is touched
    if args.workers > 1 and not is_postgres(settings.database_url):
        return _fail(
            "--workers above 1 needs PostgreSQL: with SQLite, live events reach only the "
            "subscribers of the process that made the change"
        )
    prepare_database_location(settings.database_url)  # a SQLite path that cannot be used
    try:
        server_lock = hold_server_lock(settings.database_url)
    except SQLiteInUse as refusal:
        return _fail(str(refusal))
    base_url = f"http://{_url_host(host)}:{port}"
    asyncio.run(_prepare_database(settings, admin_email, base_url))
    # Worker processes read their settings from the environment: hand them the final values.
    os.environ["RENDERTRACK_DATABASE_URL"] = settings.database_url
    os.environ["RENDERTRACK_HOST"] = host
    os.environ["RENDERTRACK_PORT"] = str(port)
    _say(
        f"serving the dashboard on {base_url}/ and GraphQL on {base_url}/graphql "
        f"({redact(settings.database_url)})"
    )
    from app.factory import GRACEFUL_SHUTDOWN_SECONDS, serving_process
    from app.websocket_protocol import WEBSOCKET_OPTIONS

    with serving_process(args.workers):
        uvicorn.run(
            "app.factory:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            proxy_headers=False,
            log_level="info",
            log_config=_stderr_logging(settings.log_format),
            access_log=False,  # the app logs each request itself, with more (app/logs.py)
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            **WEBSOCKET_OPTIONS,
        )
    if server_lock is not None:
        server_lock.close()
    return 0


def _stderr_logging(log_format: str = "text") -> dict:
    """The server's logging (RENDERTRACK_LOG_FORMAT), all of it on stderr: stdout carries only
    what a script captures, the bootstrap token."""
    from app.logs import logging_config

    return logging_config(log_format)


def _admin_email(args: argparse.Namespace, settings: Settings) -> str | None:
    """The first ADMIN's address asked for (--admin-email, else RENDERTRACK_ADMIN_EMAIL), checked
    and normalised; None when neither is given."""
    if args.admin_email is not None:
        source, given = "--admin-email", args.admin_email
    elif settings.admin_email is not None:
        source, given = "RENDERTRACK_ADMIN_EMAIL", settings.admin_email
    else:
        return None
    try:
        return normalize_email(given)
    except BadUserInput as refusal:
        raise ValueError(f"{source}: {refusal.errors[0].message}") from None


async def _prepare_database(
    settings: Settings, admin_email: str | None = None, base_url: str | None = None
) -> None:
    applied = await _apply_migrations(settings.database_url)
    for name in applied:
        _say(f"applied migration {name}")
    async with open_database(settings.database_url):
        if await users.count_users() > 0:
            if admin_email is not None:
                _say(
                    f"the database has users already: no ADMIN created for {admin_email} "
                    "(--admin-email and RENDERTRACK_ADMIN_EMAIL name the first user only)"
                )
            _say(
                "Lost a token? 'rendertrack users rotate-token --email <address>' gives that "
                "user a new one ('rendertrack users list' shows the addresses)."
            )
            return
        issued = await users.create_user(
            admin_email or BOOTSTRAP_ADMIN_EMAIL, "Administrator", Role.ADMIN
        )
        _announce_first_admin(issued, base_url)


def _announce_first_admin(issued: users.IssuedToken, base_url: str | None) -> None:
    """The first ADMIN's token in a block that stands out from the server's log lines. The token
    alone goes to stdout, where a script captures it; the rest is for the person reading."""
    rule = "=" * 78
    email = issued.user.email
    _say(f"\n{rule}\n  Created the first user, {email} (ADMIN). Its API token, shown once:\n")
    print(issued.token, flush=True)
    lines = ["", "  Sign in with it:"]
    if base_url is not None:
        lines += [
            f"    dashboard  {base_url}/",
            f"    GraphiQL   {base_url}/graphql  (Headers tab: "
            '{"Authorization": "Bearer <token>"})',
        ]
    lines += [
        "  Every API call sends the header 'Authorization: Bearer <token>'.",
        "  More users: 'rendertrack users create --email <address> --role user|worker|admin'.",
        f"  Lost it? 'rendertrack users rotate-token --email {email}' gives a new one.",
        rule,
    ]
    _say("\n".join(lines))


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        if asyncio.run(pending_model_changes()):
            return _fail("models/ have changes that no migration records: add a migration")
        _say("migrations are up to date with models/")
        return 0
    applied = asyncio.run(_apply_migrations(settings.database_url))
    for name in applied:
        _say(f"applied migration {name}")
    _say("the database is up to date" if not applied else f"applied {len(applied)} migration(s)")
    return 0


def _users_create(args: argparse.Namespace, settings: Settings) -> int:
    async def create() -> users.IssuedToken:
        return await users.create_user(args.email, args.name, args.role)

    issued = _with_database(settings, create)
    _say(f"created {issued.user.email} ({issued.user.role.value}), id {issued.user.id}")
    print(issued.token, flush=True)
    return 0


def _users_rotate_token(args: argparse.Namespace, settings: Settings) -> int:
    async def rotate() -> users.IssuedToken:
        user = await users.get_user_by_email(args.email)
        return await users.rotate_token(user.id)  # no actor: the system, as for create

    issued = _with_database(settings, rotate)
    user = issued.user
    _say(f"new token for {user.email} ({user.role.value}), id {user.id}; the old one stops working")
    if not user.is_active:
        _say(f"{user.email} is deactivated: its new token is refused like the old one")
    print(issued.token, flush=True)
    return 0


def _users_deactivate(args: argparse.Namespace, settings: Settings) -> int:
    async def deactivate() -> tuple[bool, User]:
        user = await users.get_user_by_email(args.email)
        was_active = user.is_active
        return was_active, await users.deactivate_user(user.id)  # no actor: the system

    was_active, user = _with_database(settings, deactivate)
    if was_active:
        _say(f"deactivated {user.email} ({user.role.value}), id {user.id}: its token stops working")
    else:
        _say(f"{user.email} was deactivated already")
    return 0


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    everyone = _with_database(settings, users.list_users)
    for user in everyone:
        state = "active" if user.is_active else "deactivated"
        print(f"{user.id}\t{user.email}\t{user.role.value}\t{state}\t{user.name or ''}")
    return 0


def _simulate_worker(args: argparse.Namespace, settings: Settings) -> int:
    from worker_sim.worker import run  # httpx: imported only when a worker runs

    return run(simulator_options(args))  # a bad option is a ValueError: one line, exit 1


def _with_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    async def run() -> T:
        await _apply_migrations(settings.database_url)
        async with open_database(settings.database_url):
            # On PostgreSQL a revocation made here reaches running servers at commit (NOTIFY);
            # a SQLite server finds it at its next check of its connections' users.
            previous = set_publisher(create_bus(settings.database_url))
            try:
                return await work()
            finally:
                set_publisher(previous)

    return asyncio.run(run())


async def _apply_migrations(url: str) -> list[str]:
    prepare_database_location(url)  # a SQLite path that cannot be used: one clear error
    return await apply_migrations(url)


def _url_host(host: str) -> str:
    """The host as a URL names it: an IPv6 address in brackets; 0.0.0.0 and :: (every
    address) as the loopback address a browser on this machine reaches."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _positive_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {raw!r}")
    return int(raw)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fail(message: str) -> int:
    _say(f"rendertrack: error: {message}")
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
