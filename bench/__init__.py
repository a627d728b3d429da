"""Benchmarks (`make bench`, `python -m bench [--quick]`): seven scenarios, each against a real
server with its load in another process, each figure beside its baseline or goal; never part of
`make test` (tests/test_bench_quick.py runs the quick mode). bench/RESULTS.md is the record."""
