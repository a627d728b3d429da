"""The use cases of service/jobs.py against the database: what they store, what they refuse,
which events they publish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import BadUserInput, Forbidden, InvalidTransition, NotFound
from domain.events import JobEventKind
from domain.policy import Actor
from domain.status import JobStatus
from domain.validation import JobSubmission
from models import Job
from service import jobs, settings
from service.events import RecordingPublisher

S = JobStatus
K = JobEventKind


def submission(**overrides: object) -> JobSubmission:
    fields: dict[str, object] = {
        "project_name": "  Promo 2026 ",
        "output_name": "promo_final.mp4",
        "template_path": "C:\\jobs\\promo.aep",
        "data_path": "\\\\render-nas\\share\\promo data.json",
        "output_path": "file:///C:/renders/promo_final.mp4",
    }
    return JobSubmission(**{**fields, **overrides})  # type: ignore[arg-type]


async def rendering_job(owner: Actor, worker: Actor, **overrides: object) -> Job:
    await jobs.submit_job(owner, submission(**overrides))
    claimed = await jobs.claim_next(worker)
    assert claimed is not None
    return claimed


async def test_a_valid_submission_ends_queued_with_its_events(
    owner: Actor, recorder: RecordingPublisher
) -> None:
    job = await jobs.submit_job(owner, submission(priority=8))
    stored = await Job.get(id=job.id)
    assert stored.status is S.QUEUED
    assert stored.project_name == "Promo 2026"  # trimmed
    assert stored.priority == 8 and stored.progress == 0 and stored.sequence == 3
    assert stored.user_id == owner.id and stored.error_message is None
    assert [(e.kind, e.status, e.previous_status, e.sequence) for e in recorder.events] == [
        (K.CREATED, S.PENDING, None, 1),
        (K.STATUS_CHANGED, S.VALIDATING, S.PENDING, 2),
        (K.STATUS_CHANGED, S.QUEUED, S.VALIDATING, 3),
    ]


async def test_a_submission_breaking_business_rules_ends_failed_listing_every_problem(
    owner: Actor, recorder: RecordingPublisher
) -> None:
    job = await jobs.submit_job(
        owner,
        submission(
            template_path="jobs/promo.aep", data_path="/data/../etc/x.json", output_path="/o.txt"
        ),
    )
    stored = await Job.get(id=job.id)
    assert stored.status is S.FAILED
    assert stored.completed_at is not None and stored.started_at is None
    assert stored.actual_time is None
    for field in ("template_path", "data_path", "output_path"):
        assert field in stored.error_message
    assert recorder.events[-1].status is S.FAILED


async def test_allowed_roots_confine_local_paths(owner: Actor) -> None:
    previous = settings.configure(settings.ServiceSettings(allowed_roots=("D:\\renders",)))
    try:
        inside = await jobs.submit_job(
            owner,
            submission(
                template_path="D:\\renders\\a.aep",
                data_path="d:/renders/a.json",
                output_path="D:\\Renders\\a.mp4",
            ),
        )
        outside = await jobs.submit_job(owner, submission())
    finally:
        settings.configure(previous)
    assert inside.status is S.QUEUED
    assert outside.status is S.FAILED and "allowed roots" in outside.error_message


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"project_name": None}, ["project_name"]),
        ({"priority": 11, "output_name": "a/b.mp4"}, ["output_name", "priority"]),
        ({"template_path": 5, "priority": "5"}, ["template_path", "priority"]),
        ({"project_name": "nul\x00"}, ["project_name"]),
        ({"nexrender_config": {"template": {"src": "a\x00"}}}, ["nexrender_config.template.src"]),
        ({"auto_cancel_at": datetime(2000, 1, 1, tzinfo=UTC)}, ["auto_cancel_at"]),
        ({"nexrender_config": [1, 2]}, ["nexrender_config"]),
    ],
)
async def test_malformed_input_is_bad_user_input_and_writes_nothing(
    owner: Actor, recorder: RecordingPublisher, overrides: dict, fields: list[str]
) -> None:
    with pytest.raises(BadUserInput) as refused:
        await jobs.submit_job(owner, submission(**overrides))
    assert sorted(error.field for error in refused.value.errors) == sorted(fields)
    assert await Job.all().count() == 0
    assert recorder.events == []


async def test_workers_cannot_submit_and_users_cannot_claim(owner: Actor, worker: Actor) -> None:
    with pytest.raises(Forbidden):
        await jobs.submit_job(worker, submission())
    await jobs.submit_job(owner, submission())
    with pytest.raises(Forbidden):
        await jobs.claim_next(owner)
    assert (await Job.first()).status is S.QUEUED


async def test_claim_order_is_priority_then_queue_time_then_id(owner: Actor, worker: Actor) -> None:
    low = await jobs.submit_job(owner, submission(priority=2))
    first_five = await jobs.submit_job(owner, submission(priority=5))
    second_five = await jobs.submit_job(owner, submission(priority=5))
    urgent = await jobs.submit_job(owner, submission(priority=10))
    # Same priority and queue time: the lower id goes first.
    tie_time = datetime(2026, 5, 5, tzinfo=UTC)
    await Job.filter(id__in=[first_five.id, second_five.id]).update(queued_at=tie_time)
    expected_tie = sorted([first_five.id, second_five.id])

    claimed = [await jobs.claim_next(worker) for _ in range(5)]
    assert [job.id if job else None for job in claimed] == [urgent.id, *expected_tie, low.id, None]
    stored = await Job.get(id=urgent.id)
    assert stored.status is S.RENDERING and stored.worker_id == worker.id
    assert stored.started_at is not None and stored.progress == 0


async def test_progress_moves_forward_only_and_logs_append(
    owner: Actor, worker: Actor, recorder: RecordingPublisher
) -> None:
    job = await rendering_job(owner, worker)
    recorder.clear()
    await jobs.report_progress(job.id, 50, "frame 50", actor=worker)
    await jobs.report_progress(job.id, 30, None, actor=worker)  # late report: ignored
    await jobs.report_progress(job.id, 30, "late line", actor=worker)
    stored = await Job.get(id=job.id)
    assert stored.progress == 50
    log = (await jobs.log_text(stored)).splitlines()
    assert log[-2].endswith("] frame 50") and log[-1].endswith("] late line")
    assert [(e.kind, e.progress) for e in recorder.events] == [(K.PROGRESS, 50), (K.LOG, 50)]


async def test_a_report_of_100_is_held_at_99_until_the_job_completes(
    owner: Actor, worker: Actor
) -> None:
    job = await rendering_job(owner, worker)
    await jobs.report_progress(job.id, 100, "aerender done, encoding", actor=worker)
    assert (await Job.get(id=job.id)).progress == 99
    await jobs.fail(job.id, "upload failed", actor=worker)
    assert (await Job.get(id=job.id)).progress == 99  # a FAILED job never shows 100


@pytest.mark.parametrize("progress", [-1, 101, 50.5, True, "50", None])
async def test_progress_out_of_range_is_bad_user_input(
    owner: Actor, worker: Actor, progress: object
) -> None:
    job = await rendering_job(owner, worker)
    with pytest.raises(BadUserInput) as refused:
        await jobs.report_progress(job.id, progress, actor=worker)
    assert refused.value.errors[0].field == "progress"
    assert (await Job.get(id=job.id)).progress == 0


async def test_progress_on_a_job_that_is_not_rendering_is_refused(owner: Actor) -> None:
    job = await jobs.submit_job(owner, submission())
    with pytest.raises(InvalidTransition, match="progress is reported only while it is RENDERING"):
        await jobs.report_progress(job.id, 10)
    assert (await Job.get(id=job.id)).progress == 0


async def test_complete_sets_progress_times_and_actual_time(owner: Actor, worker: Actor) -> None:
    job = await rendering_job(owner, worker)
    started = datetime.now(UTC) - timedelta(seconds=125)
    await Job.filter(id=job.id).update(started_at=started)
    done = await jobs.complete(job.id, actor=worker)
    stored = await Job.get(id=job.id)
    assert stored.status is S.COMPLETED and stored.progress == 100
    assert stored.actual_time in (125, 126)
    assert done.completed_at == stored.completed_at


async def test_only_the_holding_worker_or_an_admin_reports(
    owner: Actor, worker: Actor, admin: Actor
) -> None:
    from service.users import actor_of, create_user

    other_worker = actor_of((await create_user("w2@example.com", role="worker")).user)
    job = await rendering_job(owner, worker)
    with pytest.raises(NotFound):
        await jobs.report_progress(job.id, 10, actor=other_worker)
    with pytest.raises(Forbidden):  # the owner sees the job but does not render it
        await jobs.complete(job.id, actor=owner)
    await jobs.report_progress(job.id, 20, actor=admin)
    await jobs.fail(job.id, "GPU fell over", actor=worker)
    stored = await Job.get(id=job.id)
    assert stored.status is S.FAILED and stored.progress == 20


async def test_another_users_job_is_not_found_for_management(owner: Actor) -> None:
    from service.users import actor_of, create_user

    stranger = actor_of((await create_user("eve@example.com")).user)
    job = await jobs.submit_job(owner, submission())
    for attempt in (
        jobs.cancel(job.id, "mine now", actor=stranger),
        jobs.set_priority(job.id, 9, actor=stranger),
        jobs.retry(job.id, actor=stranger),
    ):
        with pytest.raises(NotFound):
            await attempt
    stored = await Job.get(id=job.id)
    assert stored.status is S.QUEUED and stored.priority == 5


async def test_cancel_then_retry_requeues_with_a_log_line(
    owner: Actor, worker: Actor, recorder: RecordingPublisher
) -> None:
    job = await rendering_job(owner, worker)
    await jobs.report_progress(job.id, 70, actor=worker)
    await jobs.cancel(job.id, "client changed the brief", actor=owner)
    cancelled = await Job.get(id=job.id)
    assert cancelled.status is S.CANCELLED and cancelled.cancelled_reason
    recorder.clear()

    retried = await jobs.retry(job.id, actor=owner)
    stored = await Job.get(id=job.id)
    assert retried.status is S.QUEUED == stored.status
    assert stored.progress == 0 and stored.cancelled_reason is None
    assert stored.started_at is None and stored.completed_at is None and stored.worker_id is None
    assert "retried after CANCELLED" in await jobs.log_text(stored)
    assert [e.status for e in recorder.events] == [S.PENDING, S.VALIDATING, S.QUEUED]
    with pytest.raises(InvalidTransition):
        await jobs.retry(job.id, actor=owner)


async def test_requeue_keeps_the_place_in_the_queue(owner: Actor, worker: Actor) -> None:
    job = await rendering_job(owner, worker)
    queued_at = (await Job.get(id=job.id)).queued_at
    later = await jobs.submit_job(owner, submission())
    await jobs.requeue(job.id, actor=worker)
    stored = await Job.get(id=job.id)
    assert stored.status is S.QUEUED and stored.queued_at == queued_at
    assert stored.worker_id is None and stored.started_at is None
    assert (await jobs.claim_next(worker)).id == job.id
    assert (await jobs.claim_next(worker)).id == later.id


async def test_priority_changes_until_the_job_is_final(
    owner: Actor, worker: Actor, recorder: RecordingPublisher
) -> None:
    job = await jobs.submit_job(owner, submission())
    recorder.clear()
    await jobs.set_priority(job.id, 9, actor=owner)
    await jobs.set_priority(job.id, 9, actor=owner)  # no change, no event
    assert [(e.kind, e.sequence) for e in recorder.events] == [(K.PRIORITY_CHANGED, 4)]
    with pytest.raises(BadUserInput):
        await jobs.set_priority(job.id, 0, actor=owner)
    await jobs.cancel(job.id, "gone", actor=owner)
    with pytest.raises(InvalidTransition, match="priority"):
        await jobs.set_priority(job.id, 3, actor=owner)
    assert (await Job.get(id=job.id)).priority == 9


async def test_an_unknown_job_is_not_found(db: str) -> None:
    with pytest.raises(NotFound, match="Job nope was not found"):
        await jobs.complete("nope")
