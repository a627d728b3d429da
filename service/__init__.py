"""Use cases: each one transaction, each the only place that writes what it changes."""
