#!/usr/bin/env bash
# The whole suite, once per database: SQLite always, PostgreSQL when a server is named (CI names
# one and must run it). One process per backend: Tortoise cannot switch dialects in a process.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/python -m pytest "$@")

echo "== SQLite ==" >&2
RENDERTRACK_TEST_DATABASE=sqlite "${PYTEST[@]}"
sqlite_status=$?

if [ -n "${RENDERTRACK_TEST_POSTGRES_URL:-}" ]; then
  echo "== PostgreSQL (${RENDERTRACK_TEST_POSTGRES_URL}) ==" >&2
  RENDERTRACK_TEST_DATABASE=postgres "${PYTEST[@]}"
  postgres_status=$?
elif [ "${CI:-}" = "true" ]; then
  echo "CI=true but RENDERTRACK_TEST_POSTGRES_URL is not set: the PostgreSQL half must run" >&2
  postgres_status=1
else
  echo "PostgreSQL half skipped: set RENDERTRACK_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres to run it (CI does)" >&2
  postgres_status=0
fi

[ "$sqlite_status" -eq 0 ] && [ "$postgres_status" -eq 0 ]
