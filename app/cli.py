"""The `rendertrack` command line: serve, migrate, and manage users.

Anything a script captures goes to stdout (a new token, alone on its line); every message for a
person goes to stderr. A failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from app.database import open_database, prepare_database_location, redact
from app.migrations import apply_migrations, pending_model_changes
from app.settings import ENVIRONMENT_HELP, Settings
from app.sqlite_lock import SQLiteInUse, hold_server_lock
from domain.errors import DomainError
from domain.status import Role
from models.config import is_postgres
from service import users

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
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
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
    asyncio.run(_prepare_database(settings))
    # Worker processes read their settings from the environment: hand them the final values.
    os.environ["RENDERTRACK_DATABASE_URL"] = settings.database_url
    os.environ["RENDERTRACK_HOST"] = host
    os.environ["RENDERTRACK_PORT"] = str(port)
    _say(f"serving GraphQL on http://{host}:{port}/graphql ({redact(settings.database_url)})")
    uvicorn.run(
        "app.factory:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        proxy_headers=False,
        log_level="info",
        log_config=_stderr_logging(),
    )
    if server_lock is not None:
        server_lock.close()
    return 0


def _stderr_logging() -> dict:
    """uvicorn's logging with its access log on stderr too (its default is stdout): stdout
    carries only what a script captures, the bootstrap token."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    # rendertrack's own messages (the sweeper's actions, unexpected errors) beside uvicorn's.
    for package in ("app", "gql", "service"):
        config["loggers"][package] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


async def _prepare_database(settings: Settings) -> None:
    applied = await _apply_migrations(settings.database_url)
    for name in applied:
        _say(f"applied migration {name}")
    async with open_database(settings.database_url):
        if await users.count_users() == 0:
            issued = await users.create_user(BOOTSTRAP_ADMIN_EMAIL, "Administrator", Role.ADMIN)
            _say(f"created the first user, {issued.user.email} (ADMIN). Its API token, shown once:")
            print(issued.token, flush=True)
            _say(
                "Use it as the header 'Authorization: Bearer <token>' (in GraphiQL: the Headers "
                "tab), and create more users with 'rendertrack users create'."
            )


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


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    everyone = _with_database(settings, users.list_users)
    for user in everyone:
        state = "active" if user.is_active else "deactivated"
        print(f"{user.id}\t{user.email}\t{user.role.value}\t{state}\t{user.name or ''}")
    return 0


def _with_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    async def run() -> T:
        await _apply_migrations(settings.database_url)
        async with open_database(settings.database_url):
            return await work()

    return asyncio.run(run())


async def _apply_migrations(url: str) -> list[str]:
    prepare_database_location(url)  # a SQLite path that cannot be used: one clear error
    return await apply_migrations(url)


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
