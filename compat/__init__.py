"""Nexrender's REST API under /api/v1, a drop-in for @nexrender/server: Nexrender workers and
tools (@nexrender/api) talk to rendertrack unchanged, with a rendertrack token as their secret.

A layer beside gql/: it authenticates, calls the service use cases, and translates both ways
with domain/nexrender_jobs.py; no rule of its own.
"""
