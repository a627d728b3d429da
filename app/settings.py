"""Configuration from RENDERTRACK_* environment variables, each with a laptop-friendly default."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from domain.joblog import DEFAULT_LOG_LIMIT_BYTES
from domain.leases import DEFAULT_RETRY_BACKOFF_SECONDS, DEFAULT_STALL_TIMEOUT_SECONDS
from domain.validation import (
    URI_SCHEMES,
    parse_allowed_actions,
    parse_allowed_roots,
    parse_uri_schemes,
)
from gql.defaults import (
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_MAX_COST,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
)
from models.config import DATABASE_URL_VARIABLE, database_url
from service.settings import DEFAULT_EVENT_RETENTION_DAYS, ServiceSettings
from service.sweeper import DEFAULT_SWEEP_INTERVAL_SECONDS

# A trim keeps three quarters of the cap: below 64 KiB the longest line (4096 characters of up
# to 4 bytes, plus its stamp) could be dropped as soon as it is written.
MIN_LOG_LIMIT_BYTES = 64 * 1024
MAX_LOG_LIMIT_BYTES = 64 * 1024 * 1024
# Bounds of the limits that count things (connections, subscriptions, query cost).
MAX_COUNT = 1_000_000
# A hundred years: dates of the retention's cut-off stay in range.
MAX_EVENT_RETENTION_DAYS = 36_500
# Bounds that keep every duty's arithmetic on dates in range and the sweeper from spinning.
DAY = 24 * 3600.0
LIMITS: dict[str, tuple[float, float]] = {
    "RENDERTRACK_STALL_TIMEOUT": (1.0, 7 * DAY),
    "RENDERTRACK_RETRY_BACKOFF": (0.0, DAY),
    "RENDERTRACK_SWEEP_INTERVAL": (0.1, 3600.0),
}
LOG_FORMATS = ("text", "json", "keyvalue")
# A shared secret for scrapers: long enough not to be guessed, one header value.
MIN_METRICS_TOKEN_CHARS = 16

ENVIRONMENT_HELP = """\
environment:
  RENDERTRACK_DATABASE_URL          database URL (default: sqlite://data/rendertrack.sqlite3;
                                    postgres://user@host:5432/db for PostgreSQL)
  RENDERTRACK_HOST                  address to listen on (default: 127.0.0.1)
  RENDERTRACK_PORT                  port to listen on (default: 8000)
  RENDERTRACK_ALLOWED_ORIGINS       comma-separated browser origins allowed to open websockets
  RENDERTRACK_ALLOWED_ROOTS         ';'-separated roots that local job paths must lie inside
  RENDERTRACK_ALLOWED_URI_SCHEMES   comma-separated URI schemes job paths and nexrenderConfig
                                    may use (default: http, https, s3, gs, ftp, sftp, file)
  RENDERTRACK_ALLOWED_ACTIONS       comma-separated modules nexrenderConfig actions may load
                                    beside the official @nexrender/action-* ones (exact names)
  RENDERTRACK_PUBLIC_INTROSPECTION  1 to allow GraphQL introspection without a token
  RENDERTRACK_MAX_QUERY_COST        the most nodes one GraphQL request may ask for, estimated
                                    before it runs (default 5000)
  RENDERTRACK_MAX_CONNECTIONS_PER_USER
                                    open websockets one user may hold per process (default 20)
  RENDERTRACK_MAX_SUBSCRIPTIONS_PER_CONNECTION
                                    subscriptions one websocket may carry (default 100)
  RENDERTRACK_STALL_TIMEOUT         seconds a RENDERING job's worker may stay silent before the
                                    job is requeued (or failed after its last attempt; default
                                    600, 1 to 604800)
  RENDERTRACK_RETRY_BACKOFF         seconds a retryable failure waits before the job is handed
                                    out again, doubled per attempt (default 10, 0 to 86400)
  RENDERTRACK_SWEEP_INTERVAL        seconds between two rounds of the sweeper (stalled workers,
                                    deadlines; default 5, 0.1 to 3600)
  RENDERTRACK_LOG_LIMIT             bytes of log kept per job; the oldest lines go past it
                                    (default 262144, 65536 to 67108864)
  RENDERTRACK_EVENT_RETENTION_DAYS  days the history of a finished job is kept; older events
                                    of finished jobs are pruned, the jobs stay (default 90,
                                    0 keeps every event, up to 36500)
  RENDERTRACK_ADMIN_EMAIL           address of the ADMIN that serve creates on an empty
                                    database (default: admin@example.com; --admin-email wins)
  RENDERTRACK_LOG_FORMAT            text (default), json (one object per line) or keyvalue
                                    (key=value pairs): the server's log lines, one per request
  RENDERTRACK_METRICS_TOKEN         when set, GET /metrics needs 'Authorization: Bearer <it>'
                                    (16 or more printable characters; default: no token)
"""


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_origins: tuple[str, ...] = ()
    allowed_roots: tuple[str, ...] = ()
    public_introspection: bool = False
    stall_timeout_seconds: float = DEFAULT_STALL_TIMEOUT_SECONDS
    retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS
    sweep_interval_seconds: float = DEFAULT_SWEEP_INTERVAL_SECONDS
    log_limit_bytes: int = DEFAULT_LOG_LIMIT_BYTES
    max_query_cost: int = DEFAULT_MAX_COST
    max_connections_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER
    max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION
    allowed_uri_schemes: tuple[str, ...] = URI_SCHEMES
    allowed_actions: tuple[str, ...] = ()
    event_retention_days: int = DEFAULT_EVENT_RETENTION_DAYS
    # As given; `rendertrack serve` checks it (an empty database's first ADMIN).
    admin_email: str | None = None
    log_format: str = "text"
    metrics_token: str | None = field(default=None, repr=False)  # a secret

    def service_settings(self) -> ServiceSettings:
        return ServiceSettings(
            allowed_roots=self.allowed_roots,
            stall_timeout_seconds=self.stall_timeout_seconds,
            retry_backoff_seconds=self.retry_backoff_seconds,
            log_limit_bytes=self.log_limit_bytes,
            allowed_uri_schemes=self.allowed_uri_schemes,
            allowed_actions=self.allowed_actions,
            event_retention_days=self.event_retention_days,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=database_url(env.get(DATABASE_URL_VARIABLE, "").strip() or None),
            host=env.get("RENDERTRACK_HOST", "127.0.0.1"),
            port=_port(env.get("RENDERTRACK_PORT", "8000")),
            allowed_origins=tuple(
                origin.strip()
                for origin in env.get("RENDERTRACK_ALLOWED_ORIGINS", "").split(",")
                if origin.strip()
            ),
            allowed_roots=parse_allowed_roots(env.get("RENDERTRACK_ALLOWED_ROOTS")),
            public_introspection=env.get("RENDERTRACK_PUBLIC_INTROSPECTION", "") in {"1", "true"},
            stall_timeout_seconds=_seconds(
                env, "RENDERTRACK_STALL_TIMEOUT", DEFAULT_STALL_TIMEOUT_SECONDS
            ),
            retry_backoff_seconds=_seconds(
                env, "RENDERTRACK_RETRY_BACKOFF", DEFAULT_RETRY_BACKOFF_SECONDS
            ),
            sweep_interval_seconds=_seconds(
                env, "RENDERTRACK_SWEEP_INTERVAL", DEFAULT_SWEEP_INTERVAL_SECONDS
            ),
            log_limit_bytes=_count(
                env,
                "RENDERTRACK_LOG_LIMIT",
                DEFAULT_LOG_LIMIT_BYTES,
                least=MIN_LOG_LIMIT_BYTES,
                most=MAX_LOG_LIMIT_BYTES,
                unit="a number of bytes",
            ),
            max_query_cost=_count(env, "RENDERTRACK_MAX_QUERY_COST", DEFAULT_MAX_COST),
            max_connections_per_user=_count(
                env, "RENDERTRACK_MAX_CONNECTIONS_PER_USER", DEFAULT_MAX_CONNECTIONS_PER_USER
            ),
            max_subscriptions_per_connection=_count(
                env,
                "RENDERTRACK_MAX_SUBSCRIPTIONS_PER_CONNECTION",
                DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            ),
            allowed_uri_schemes=parse_uri_schemes(env.get("RENDERTRACK_ALLOWED_URI_SCHEMES")),
            allowed_actions=parse_allowed_actions(env.get("RENDERTRACK_ALLOWED_ACTIONS")),
            event_retention_days=_count(
                env,
                "RENDERTRACK_EVENT_RETENTION_DAYS",
                DEFAULT_EVENT_RETENTION_DAYS,
                least=0,
                most=MAX_EVENT_RETENTION_DAYS,
                unit="a number of days",
            ),
            admin_email=env.get("RENDERTRACK_ADMIN_EMAIL", "").strip() or None,
            log_format=_log_format(env.get("RENDERTRACK_LOG_FORMAT", "")),
            metrics_token=_metrics_token(env.get("RENDERTRACK_METRICS_TOKEN", "")),
        )


def _port(raw: str) -> int:
    if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"RENDERTRACK_PORT must be a port number, not {raw!r}")
    return int(raw)


def _log_format(raw: str) -> str:
    value = raw.strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise ValueError(
            f"RENDERTRACK_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {raw!r}"
        )
    return value


def _metrics_token(raw: str) -> str | None:
    """None when unset; else the token (never quoted back in the refusal: it is a secret)."""
    value = raw.strip()
    if not value:
        return None
    printable = value.isascii() and value.isprintable() and " " not in value
    if not printable or len(value) < MIN_METRICS_TOKEN_CHARS:
        raise ValueError(
            f"RENDERTRACK_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_CHARS} printable "
            "ASCII characters without spaces"
        )
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    least, most = LIMITS[name]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not least <= value <= most:
        raise ValueError(
            f"{name} must be a number of seconds from {least:g} to {most:g}, not {raw!r}"
        )
    return value


def _count(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    least: int = 1,
    most: int = MAX_COUNT,
    unit: str = "a whole number",
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or not least <= int(raw) <= most:
        raise ValueError(f"{name} must be {unit} from {least} to {most}, not {raw!r}")
    return int(raw)
