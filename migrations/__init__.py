"""aerich migrations, generated from models/ and committed. Never edit one that has landed."""

from pathlib import Path

MIGRATIONS_LOCATION = Path(__file__).resolve().parent
