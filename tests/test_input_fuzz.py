"""Whatever a client sends, the use cases answer with a job or a coded refusal, never with an
error from the database or the ORM (on the real database: PostgreSQL refuses what SQLite keeps)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.database import open_database
from domain.errors import BadUserInput, NotFound
from domain.status import JobStatus
from domain.validation import JobSubmission
from models import Job
from service import jobs, queries, users

# Text with the characters that break databases: NUL, control characters, surrogates,
# backslashes and quotes, and lengths past every column.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None), max_size=40),
    st.builds(lambda n, c: c * n, st.integers(250, 1100), st.sampled_from(["a", "/", "é", "\\"])),
    st.sampled_from(["", " ", "\x00", "C:\\jobs\\p.aep", "/a/../b.aep", "inline", "worker"]),
    st.sampled_from(["/" + "p" * 1100 + ".aep", "n" * 256, "\ud800", "e\u0301" * 600]),
)
field_value = st.one_of(hostile_text, st.none(), st.integers(), st.floats(), st.booleans())
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=12,
)
VALID = {
    "project_name": "Promo",
    "output_name": "promo.mp4",
    "template_path": "/mnt/jobs/promo.aep",
    "data_path": "/mnt/jobs/promo.json",
    "output_path": "/mnt/renders/promo.mp4",
    "priority": 5,
    "nexrender_config": None,
}
# A valid submission with one or two fields replaced: most reach the database.
submissions = st.builds(
    lambda changes: JobSubmission(**{**VALID, **changes}),
    st.dictionaries(
        st.sampled_from(sorted(VALID)),
        st.one_of(field_value, json_value),
        min_size=1,
        max_size=2,
    ),
)


async def submit_all(url: str, batch: list[JobSubmission], lookups: list[str]) -> None:
    async with open_database(url):
        tag = uuid.uuid4().hex[:10]
        owner = users.actor_of((await users.create_user(f"fuzz-{tag}@example.com")).user)
        for submission in batch:
            before = await Job.all().count()
            try:
                job = await jobs.submit_job(owner, submission)
            except BadUserInput as refused:
                assert refused.errors and await Job.all().count() == before
                continue
            assert job.status in (JobStatus.QUEUED, JobStatus.FAILED)
            stored = await Job.get(id=job.id)
            assert stored.template_path == job.template_path  # stored as sent
        for text in lookups:
            try:
                issued = await users.create_user(f"{tag}{len(text)}@example.com", text)
            except BadUserInput:
                pass
            else:
                assert (await users.authenticate(issued.token)).name == (text.strip() or None)
            assert await queries.job_for(owner, text) is None
            # A search term is answered or refused naming `search`; an id that is no job's is
            # NOT_FOUND, never another error.
            try:
                count = await queries.count_jobs(owner, queries.JobQuery(search=text))
            except BadUserInput as refused:
                assert [error.field for error in refused.errors] == ["search"]
            else:
                assert count >= 0
            with pytest.raises(NotFound):
                await jobs.cancel(text, "fuzz", actor=owner)


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(submissions, max_size=8), lookups=st.lists(hostile_text, max_size=5))
def test_hostile_input_is_a_job_or_a_coded_refusal(
    database_url: str, batch: list[JobSubmission], lookups: list[str]
) -> None:
    asyncio.run(submit_all(database_url, batch, lookups))
