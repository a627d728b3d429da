"""Building valid jobs for tests: the helpers live in testkit/jobs.py (the benchmarks use them
too); these names stay importable from here."""

from __future__ import annotations

from testkit.jobs import VALID_JOB_FIELDS, insert_job, valid_submission

__all__ = ["VALID_JOB_FIELDS", "insert_job", "valid_submission"]
