"""Helpers shared by the test suite (tests/) and the benchmarks (bench/): fresh PostgreSQL
databases and valid jobs. Imports domain/ and models/ only, never app/, gql/, tests/ or bench/
(tests/test_layers.py checks)."""
