"""Where the database is and how Tortoise and aerich reach it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DATABASE_URL_VARIABLE = "RENDERTRACK_DATABASE_URL"
DEFAULT_SQLITE_PATH = Path("data") / "rendertrack.sqlite3"
APP_LABEL = "models"
MODEL_MODULES = ["models.user", "models.job", "models.job_log", "aerich.models"]


def database_url(explicit: str | None = None) -> str:
    """The configured URL; by default a SQLite file under ./data/, whose folder is created."""
    url = explicit or os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if url:
        return url
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite://{DEFAULT_SQLITE_PATH}"


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0] in {"postgres", "postgresql", "asyncpg", "psycopg"}


def tortoise_config(url: str | None = None) -> dict[str, Any]:
    """SQLite connections open with WAL and foreign keys on (Tortoise's defaults since 1.1)."""
    return {
        "connections": {"default": database_url(url)},
        "apps": {APP_LABEL: {"models": MODEL_MODULES, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


def __getattr__(name: str) -> Any:
    # aerich's CLI reads `models.config.TORTOISE_ORM`; build it when asked, from the environment.
    if name == "TORTOISE_ORM":
        return tortoise_config()
    raise AttributeError(name)
