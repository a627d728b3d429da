"""Imports point one way (app -> gql | compat -> service -> models -> domain): read from the
source.

Beside the layers: bench/ never imports tests/ (what both need is in testkit/), and testkit/
imports neither the outer layers nor either of its users."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "domain": {"tortoise", "strawberry", "starlette", "uvicorn", "asyncpg", "aerich",
               "models", "service", "gql", "app", "compat"},
    "models": {"strawberry", "starlette", "service", "gql", "app", "compat"},
    "service": {"strawberry", "starlette", "gql", "app", "compat"},
    "gql": {"app", "compat"},
    # The Nexrender REST API is beside gql/: it calls the use cases, never the GraphQL layer.
    "compat": {"app", "gql", "strawberry"},
    # The simulated worker is a client: HTTP only, none of the server's layers.
    "worker_sim": {"app", "gql", "compat", "service", "models", "tortoise"},
    "testkit": {"app", "gql", "tests", "bench"},
    "bench": {"tests"},
}  # fmt: skip


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


CASES = [(layer, path) for layer in FORBIDDEN for path in sorted((ROOT / layer).rglob("*.py"))]


@pytest.mark.parametrize(("layer", "path"), CASES, ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_a_layer_imports_nothing_above_it(layer: str, path: Path) -> None:
    wrong = imported_packages(path) & FORBIDDEN[layer]
    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_the_check_sees_imports() -> None:
    assert imported_packages(ROOT / "service" / "jobs.py") >= {"tortoise", "domain", "models"}


def test_the_check_sees_bench_and_testkit_imports() -> None:
    assert imported_packages(ROOT / "bench" / "progress.py") >= {"testkit", "service", "app"}
    assert imported_packages(ROOT / "testkit" / "postgres.py") >= {"asyncpg"}
