"""Pure rules of rendertrack: statuses, transitions, validation and errors.

Nothing here imports Tortoise, Strawberry or Starlette (tests/test_layers.py checks it).
"""
