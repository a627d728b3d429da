"""Process-wide settings of the use cases, set once by the composition root (app/)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSettings:
    allowed_roots: tuple[str, ...] = ()


_current = ServiceSettings()


def configure(settings: ServiceSettings) -> ServiceSettings:
    """Installs `settings` and returns the ones it replaces."""
    global _current
    previous, _current = _current, settings
    return previous


def current() -> ServiceSettings:
    return _current
