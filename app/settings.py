"""Configuration from RENDERTRACK_* environment variables, each with a laptop-friendly default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from domain.validation import parse_allowed_roots
from models.config import DATABASE_URL_VARIABLE, database_url

ENVIRONMENT_HELP = """\
environment:
  RENDERTRACK_DATABASE_URL          database URL (default: sqlite://data/rendertrack.sqlite3;
                                    postgres://user@host:5432/db for PostgreSQL)
  RENDERTRACK_HOST                  address to listen on (default: 127.0.0.1)
  RENDERTRACK_PORT                  port to listen on (default: 8000)
  RENDERTRACK_ALLOWED_ORIGINS       comma-separated browser origins allowed to open websockets
  RENDERTRACK_ALLOWED_ROOTS         ';'-separated roots that local job paths must lie inside
  RENDERTRACK_PUBLIC_INTROSPECTION  1 to allow GraphQL introspection without a token
"""


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_origins: tuple[str, ...] = ()
    allowed_roots: tuple[str, ...] = ()
    public_introspection: bool = False

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
        )


def _port(raw: str) -> int:
    if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"RENDERTRACK_PORT must be a port number, not {raw!r}")
    return int(raw)
