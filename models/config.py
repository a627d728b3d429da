"""Where the database is and how Tortoise and aerich reach it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from tortoise.backends.base.config_generator import expand_db_url
from tortoise.exceptions import ConfigurationError

DATABASE_URL_VARIABLE = "RENDERTRACK_DATABASE_URL"
DEFAULT_SQLITE_PATH = Path("data") / "rendertrack.sqlite3"
APP_LABEL = "models"
MODEL_MODULES = ["models.user", "models.job", "models.job_log", "models.job_event", "aerich.models"]


def database_url(explicit: str | None = None) -> str:
    """The configured URL; by default a SQLite file under ./data/, whose folder is created."""
    url = explicit or os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if url:
        return url
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite://{DEFAULT_SQLITE_PATH}"


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0] in {"postgres", "postgresql", "asyncpg", "psycopg"}


# The query options of a PostgreSQL URL, as Tortoise 1.1.9 hands them on: its pool takes the URL
# itself (expand_db_url, then asyncpg.create_pool); the connections rendertrack opens beside the
# pool (the migration lock, the LISTEN connection) take `asyncpg_connect_args(url)`.
# Each option's value is read the way Tortoise casts it, so a bad one is refused here, by name,
# before Tortoise fails on it.
_POOL_OPTIONS: dict[str, Callable[[str], object]] = {
    "minsize": int,
    "maxsize": int,
    "min_size": int,
    "max_size": int,
    "max_queries": int,
    "max_inactive_connection_lifetime": float,
}
# Keyword arguments of asyncpg.connect that Tortoise passes on to every connection of its pool.
_CONNECT_OPTIONS: dict[str, Callable[[str], object]] = {
    "timeout": int,
    "statement_cache_size": int,
    "max_cached_statement_lifetime": int,
    "max_cacheable_statement_size": int,
    "command_timeout": float,
    "passfile": str,
    "target_session_attrs": str,
    "krbsrvname": str,
    "gsslib": str,
}
# Options Tortoise turns into server settings of every connection.
_SERVER_SETTING_OPTIONS = {"schema": "search_path", "application_name": "application_name"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# libpq's sslmode values, which asyncpg takes as its `ssl` argument.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# What a DSN (asyncpg's URL form) can carry beside the address: the rest has no DSN spelling.
_DSN_OPTIONS = {"passfile", "target_session_attrs", "krbsrvname", "gsslib"}


def asyncpg_connect_args(url: str) -> dict[str, Any]:
    """The keyword arguments of `asyncpg.connect` that reach the PostgreSQL database of the
    application's URL the way Tortoise's pool does, for a connection of its own:

    - host, port, user, password and database exactly as Tortoise reads them (expand_db_url:
      its defaults, its unquoting, a host given as `?host=/socket/dir`);
    - the pool's options (minsize, maxsize, min_size, max_size, max_queries,
      max_inactive_connection_lifetime) checked and dropped: they size a pool, not a connection;
    - the connection's options (timeout, statement_cache_size, max_cached_statement_lifetime,
      max_cacheable_statement_size, command_timeout, passfile, target_session_attrs,
      krbsrvname, gsslib) typed as Tortoise types them;
    - `schema` and `application_name` as server settings (search_path, application_name);
    - `ssl=true` as asyncpg's ssl=True, which is what Tortoise passes (SSL, with the server's
      certificate and name verified against the system's authorities). Tortoise reads any
      value of ssl as on, so `ssl=false` is refused rather than silently turning SSL on.
      libpq's `sslmode=<mode>` becomes asyncpg's ssl=<mode> (Tortoise 1.1.9 itself does not
      take sslmode: in the application's URL, write ssl=true).

    Any other option would reach PostgreSQL as an unknown server setting or Tortoise as an
    unknown argument: it is refused with a ValueError naming it, as is a value of the wrong type.
    """
    parts = urlsplit(url)
    if not is_postgres(url):
        raise ValueError(f"not a PostgreSQL URL (scheme {parts.scheme!r})")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    arguments: dict[str, Any] = {}
    server_settings: dict[str, str] = {}
    unknown = []
    for name, raw in options.items():
        if name in _POOL_OPTIONS:
            _typed(name, raw, _POOL_OPTIONS[name])
        elif name in _CONNECT_OPTIONS:
            arguments[name] = _typed(name, raw, _CONNECT_OPTIONS[name])
        elif name in _SERVER_SETTING_OPTIONS:
            server_settings[_SERVER_SETTING_OPTIONS[name]] = raw
        elif name == "ssl":
            arguments["ssl"] = _ssl_flag(raw)
        elif name == "sslmode":
            if raw not in SSL_MODES:
                raise ValueError(
                    f"database URL option sslmode must be one of {', '.join(SSL_MODES)}, "
                    f"not {raw!r}"
                )
            arguments["ssl"] = raw
        elif name not in {"host", "port", "user", "password", "database"}:
            unknown.append(name)
    if "ssl" in options and "sslmode" in options:
        raise ValueError("database URL options ssl and sslmode say the same thing: keep one")
    if unknown:
        known = sorted(
            {*_POOL_OPTIONS, *_CONNECT_OPTIONS, *_SERVER_SETTING_OPTIONS, "ssl", "sslmode"}
        )
        raise ValueError(
            f"database URL option{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))} "
            f"{'are' if len(unknown) > 1 else 'is'} unknown; the options are {', '.join(known)}"
        )
    try:
        credentials = expand_db_url(url)["credentials"]
    except (ConfigurationError, ValueError) as error:
        raise ValueError(f"cannot read the database URL: {error}") from None
    for name in ("host", "port", "user", "password", "database"):
        if credentials.get(name) is not None:
            arguments[name] = credentials[name]
    if "port" in arguments:
        arguments["port"] = _typed("port", str(arguments["port"]), int)
    if server_settings:
        arguments["server_settings"] = server_settings
    return arguments


def asyncpg_dsn(url: str) -> str:
    """`asyncpg_connect_args(url)` as one DSN string (postgresql://...), for what takes a DSN.
    Options a DSN has no spelling for (ssl=true, timeouts, statement caches) are refused:
    connect with `asyncpg.connect(**asyncpg_connect_args(url))` instead."""
    arguments = asyncpg_connect_args(url)
    query: list[tuple[str, str]] = []
    ssl = arguments.pop("ssl", None)
    if isinstance(ssl, str):
        query.append(("sslmode", ssl))
    elif ssl is not None:
        raise ValueError("ssl=true has no DSN spelling: use asyncpg_connect_args")
    for name in sorted(_DSN_OPTIONS & arguments.keys()):
        query.append((name, str(arguments.pop(name))))
    # asyncpg reads the DSN's other query parameters as server settings.
    query.extend(sorted(arguments.pop("server_settings", {}).items()))
    user, password = arguments.pop("user", None), arguments.pop("password", None)
    host, port = arguments.pop("host", None), arguments.pop("port", None)
    database = arguments.pop("database", None)
    if arguments:
        raise ValueError(
            f"{', '.join(sorted(arguments))} ha{'ve' if len(arguments) > 1 else 's'} no DSN "
            "spelling: use asyncpg_connect_args"
        )
    userinfo = ""
    if user is not None:
        userinfo = quote(user, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    location = ""
    if host is not None and host.startswith("/"):  # a Unix socket's directory
        query.insert(0, ("host", host))
        if port is not None:
            query.insert(1, ("port", str(port)))
    elif host is not None:
        location = f"[{host}]" if ":" in host else host
        if port is not None:
            location += f":{port}"
    elif port is not None:
        query.insert(0, ("port", str(port)))
    path = "/" + quote(database, safe="") if database is not None else ""
    dsn = f"postgresql://{userinfo}{location}{path}"
    return f"{dsn}?{urlencode(query)}" if query else dsn


def _typed(name: str, raw: str, kind: Callable[[str], object]) -> object:
    if kind is str:
        return raw
    try:
        return kind(raw)
    except ValueError:
        wanted = "a whole number" if kind is int else "a number"
        raise ValueError(f"database URL option {name} must be {wanted}, not {raw!r}") from None


def _ssl_flag(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        raise ValueError(
            f"database URL option ssl={raw} would turn SSL on all the same (Tortoise reads any "
            "value of ssl as on): leave ssl out not to require SSL"
        )
    raise ValueError(f"database URL option ssl takes true (or 1, yes, on), not {raw!r}")


def tortoise_config(url: str | None = None) -> dict[str, Any]:
    """SQLite connections open with WAL and foreign keys on (Tortoise's defaults since 1.1).
    PostgreSQL's pool hands connections back as they are (`keep_session`)."""
    location = database_url(url)
    connection: str | dict[str, Any] = location
    if is_postgres(location):
        connection = expand_db_url(location)
        connection["credentials"]["reset"] = keep_session
    return {
        "connections": {"default": connection},
        "apps": {APP_LABEL: {"models": MODEL_MODULES, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def keep_session(connection: object) -> None:
    """What asyncpg's pool does to a connection it takes back, besides rolling back a
    transaction left open: nothing. Its default reset query (pg_advisory_unlock_all, CLOSE ALL,
    UNLISTEN *, RESET ALL) is a round trip on every release, and rendertrack never leaves
    session state on a pooled connection: no SET, no cursor outside a transaction, its advisory
    lock is per transaction and its LISTEN connection is one of its own."""


def __getattr__(name: str) -> Any:
    # aerich's CLI reads `models.config.TORTOISE_ORM`; build it when asked, from the environment.
    if name == "TORTOISE_ORM":
        return tortoise_config()
    raise AttributeError(name)
