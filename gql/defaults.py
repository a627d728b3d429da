"""The API's default limits, each overridable by a setting (app/settings.py). Kept free of
imports so that reading the settings (every CLI command does) does not load GraphQL."""

from __future__ import annotations

# A request's cost, in units of gql/cost.py (RENDERTRACK_MAX_QUERY_COST).
DEFAULT_MAX_COST = 5_000
# Open websockets per user and process (RENDERTRACK_MAX_CONNECTIONS_PER_USER).
DEFAULT_MAX_CONNECTIONS_PER_USER = 20
# Subscriptions running at once on one websocket (RENDERTRACK_MAX_SUBSCRIPTIONS_PER_CONNECTION).
DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION = 100
