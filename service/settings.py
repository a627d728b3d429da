"""Process-wide settings of the use cases, set once by the composition root (app/)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.joblog import DEFAULT_LOG_LIMIT_BYTES
from domain.leases import DEFAULT_RETRY_BACKOFF_SECONDS, DEFAULT_STALL_TIMEOUT_SECONDS
from domain.paths import URI_SCHEMES

DEFAULT_EVENT_RETENTION_DAYS = 90


@dataclass(frozen=True)
class ServiceSettings:
    allowed_roots: tuple[str, ...] = ()
    # A RENDERING job whose worker has said nothing for this long goes back to the queue.
    stall_timeout_seconds: float = DEFAULT_STALL_TIMEOUT_SECONDS
    # The first wait after a retryable failure; it doubles with each attempt.
    retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS
    log_limit_bytes: int = DEFAULT_LOG_LIMIT_BYTES
    # The URI schemes a job's paths and its nexrender_config may use (lower-case).
    allowed_uri_schemes: tuple[str, ...] = URI_SCHEMES
    # Modules a worker may load beside the official @nexrender/action-* ones (exact names).
    allowed_actions: tuple[str, ...] = ()
    # Events of finished jobs older than this are pruned (0: kept for ever).
    event_retention_days: int = DEFAULT_EVENT_RETENTION_DAYS


_current = ServiceSettings()


def configure(settings: ServiceSettings) -> ServiceSettings:
    """Installs `settings` and returns the ones it replaces."""
    global _current
    previous, _current = _current, settings
    return previous


def current() -> ServiceSettings:
    return _current
