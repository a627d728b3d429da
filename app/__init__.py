"""Composition root: settings, the Starlette app factory, migrations and the command line."""
