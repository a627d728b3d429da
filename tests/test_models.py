"""The data model of spec 022, on the migrated database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError, ValidationError

from domain.errors import BadUserInput, Conflict
from domain.status import JobStatus, Role
from models import Job, User
from service import users
from tests.factories import VALID_JOB_FIELDS, insert_job


async def test_a_new_job_has_every_default_of_the_specification(user: User) -> None:
    before = datetime.now(UTC)
    created = await insert_job(user)
    job = await Job.get(id=created.id)

    assert len(job.id) == 25 and job.id.isalnum() and job.id.islower()
    assert job.status is JobStatus.PENDING
    assert job.priority == 5
    assert job.progress == 0
    assert job.sequence == 0
    for field in (
        "nexrender_job_id",
        "nexrender_config",
        "error_message",
        "started_at",
        "completed_at",
        "estimated_time",
        "actual_time",
        "auto_cancel_at",
        "cancelled_reason",
        "worker_id",
        "heartbeat_at",
        "not_before",
        "stage",
        "tags",
    ):
        assert getattr(job, field) is None, field
    assert (job.attempts, job.lease, job.max_attempts) == (0, 0, 3)
    assert (job.log_bytes, job.log_dropped_lines, job.log_dropped_bytes) == (0, 0, 0)
    assert before - timedelta(seconds=1) <= job.queued_at <= datetime.now(UTC)
    assert job.queued_at.tzinfo is not None
    assert job.created_at <= job.updated_at
    assert job.user_id == user.id


async def test_ids_are_distinct_cuids(user: User) -> None:
    jobs = [await insert_job(user) for _ in range(20)]
    assert len({job.id for job in jobs}) == 20


@pytest.mark.parametrize("missing", sorted(VALID_JOB_FIELDS))
async def test_each_required_field_is_enforced_and_nothing_is_written(
    user: User, missing: str
) -> None:
    fields = {k: v for k, v in VALID_JOB_FIELDS.items() if k != missing}
    with pytest.raises((ValidationError, IntegrityError)):
        await Job.create(user=user, **fields)
    assert await Job.all().count() == 0


async def test_a_job_needs_a_user(db: str) -> None:
    with pytest.raises((ValidationError, IntegrityError, ValueError)):
        await Job.create(**VALID_JOB_FIELDS)
    assert await Job.all().count() == 0


@pytest.mark.parametrize("status", ["DONE", "pending", "", "ARCHIVED"])
async def test_a_status_outside_the_enum_is_refused_before_anything_is_written(
    user: User, status: str
) -> None:
    with pytest.raises((ValidationError, ValueError)):
        await Job.create(user=user, status=status, **VALID_JOB_FIELDS)
    assert await Job.all().count() == 0

    job = await insert_job(user)
    with pytest.raises((ValidationError, ValueError)):
        await Job.filter(id=job.id).update(status=status)
    stored = await Job.get(id=job.id)
    assert stored.status is JobStatus.PENDING


def test_the_status_enum_is_exactly_the_seven_of_the_specification() -> None:
    assert [status.value for status in JobStatus] == [
        "PENDING",
        "VALIDATING",
        "QUEUED",
        "RENDERING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]


NESTED_CONFIG = {
    "template": {"src": "file:///C:/jobs/promo.aep", "composition": "main", "frameStart": 0},
    "assets": [
        {"type": "data", "layerName": "título", "property": "Source Text", "value": "日本語 ✓"},
        {"type": "image", "src": "https://cdn.example.com/a b.png", "layerIndex": 3},
    ],
    "actions": {"postrender": [{"module": "@nexrender/action-encode", "preset": "mp4"}]},
    "numbers": [0, -1, 2**53, 3.5, 1e-7, 1.7976931348623157e308],
    "flags": [True, False, None],
    "empty": {"list": [], "object": {}},
    "emoji": "🎬 \u00e9\u0301 \\ \" '",
}


async def test_json_round_trips_nested_objects_lists_unicode_and_numbers(user: User) -> None:
    job = await insert_job(user, nexrender_config=NESTED_CONFIG)
    stored = await Job.get(id=job.id)
    assert stored.nexrender_config == NESTED_CONFIG
    assert type(stored.nexrender_config["numbers"][2]) is int
    assert type(stored.nexrender_config["numbers"][3]) is float
    assert not isinstance(stored.nexrender_config["numbers"][3], Decimal)


PATHS = [
    "C:\\jobs\\promo.aep",
    "\\\\render-nas\\share\\Projets été\\promo final.aep",
    "/Volumes/Render Drive/프로젝트/promo.aep",
    "D:\\renders\\shot_[#####].png",
    "file:///C:/jobs/promo%20final.aep",
    "s3://bucket/key with spaces/ü.aep",
    "C:\\trailing space \\x.aep",
]


@pytest.mark.parametrize("path", PATHS)
async def test_paths_are_stored_byte_for_byte(user: User, path: str) -> None:
    job = await insert_job(user, template_path=path, data_path=path, output_path=path)
    stored = await Job.get(id=job.id)
    for field in ("template_path", "data_path", "output_path"):
        assert getattr(stored, field).encode() == path.encode()


async def test_user_jobs_is_the_reverse_relation(user: User) -> None:
    other = (await users.create_user("grace@example.com", "Grace")).user
    mine = {(await insert_job(user)).id for _ in range(3)}
    await insert_job(other)
    assert {job.id for job in await user.jobs.all()} == mine
    assert await user.jobs.all().count() == 3


EXPECTED_INDEXES = {("user_id",), ("status",), ("priority", "queued_at"), ("auto_cancel_at",)}


async def _index_columns(backend: str) -> set[tuple[str, ...]]:
    connection = connections.get("default")
    if backend == "postgres":
        rows = await connection.execute_query_dict(
            """
            SELECT i.relname AS name, array_agg(a.attname ORDER BY k.ordinality) AS columns
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ordinality)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE t.relname = 'jobs' AND NOT x.indisprimary
            GROUP BY i.relname
            """
        )
        return {tuple(row["columns"]) for row in rows}
    names = await connection.execute_query_dict("PRAGMA index_list('jobs')")
    found = set()
    for row in names:
        info = await connection.execute_query_dict(f"PRAGMA index_info('{row['name']}')")
        found.add(tuple(col["name"] for col in sorted(info, key=lambda c: c["seqno"])))
    return found


async def test_the_four_indexes_exist_in_the_migrated_database(db: str, backend: str) -> None:
    assert await _index_columns(backend) >= EXPECTED_INDEXES


async def test_updated_at_moves_on_save_and_on_bulk_update(user: User) -> None:
    job = await insert_job(user)
    first = (await Job.get(id=job.id)).updated_at

    await asyncio.sleep(0.01)
    job.priority = 7
    await job.save()
    second = (await Job.get(id=job.id)).updated_at
    assert second > first

    await asyncio.sleep(0.01)
    assert await Job.filter(id=job.id).update(priority=8) == 1
    third = (await Job.get(id=job.id)).updated_at
    assert third > second

    await asyncio.sleep(0.01)
    await User.filter(id=user.id).update(name="Ada L.")
    assert (await User.get(id=user.id)).updated_at > user.updated_at


async def test_a_user_with_jobs_cannot_be_deleted(user: User) -> None:
    job = await insert_job(user)
    with pytest.raises(Conflict, match="has jobs"):
        await user.delete()
    with pytest.raises(IntegrityError):  # the database refuses it too, whatever the path
        await User.filter(id=user.id).delete()
    assert await User.filter(id=user.id).exists()
    assert await Job.filter(id=job.id).exists()


async def test_a_user_without_jobs_can_be_deleted(user: User) -> None:
    await user.delete()
    assert not await User.filter(id=user.id).exists()


async def test_emails_are_validated_stored_lower_case_and_unique(db: str) -> None:
    issued = await users.create_user("  Ada.Lovelace@Example.COM ", None, Role.WORKER)
    assert (await User.get(id=issued.user.id)).email == "ada.lovelace@example.com"
    with pytest.raises(BadUserInput, match="already in use"):
        await users.create_user("ADA.LOVELACE@example.com")
    for bad in ("not-an-email", "a@", "@example.com", "", "a b@example.com"):
        with pytest.raises(BadUserInput) as refused:
            await users.create_user(bad)
        assert refused.value.errors[0].field == "email"
    assert await User.all().count() == 1


async def test_tokens_are_stored_only_as_a_hash(db: str) -> None:
    issued = await users.create_user("ada@example.com")
    stored = await User.get(id=issued.user.id)
    assert issued.token not in stored.token_hash
    assert len(stored.token_hash) == 64
    assert (await users.authenticate(issued.token)).id == stored.id
    assert await users.authenticate(issued.token + "x") is None
    await users.deactivate_user(stored.id)
    assert await users.authenticate(issued.token) is None


async def test_sqlite_is_opened_with_wal_and_foreign_keys(db: str, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite pragmas")
    connection = connections.get("default")
    assert (await connection.execute_query_dict("PRAGMA journal_mode"))[0]["journal_mode"] == "wal"
    assert (await connection.execute_query_dict("PRAGMA foreign_keys"))[0]["foreign_keys"] == 1


async def test_the_migration_is_recorded(db: str) -> None:
    rows = await connections.get("default").execute_query_dict('SELECT version FROM "aerich"')
    assert [row["version"] for row in rows] == [
        "0_20261128133505_init.py",
        "1_20261128204306_queue_core.py",
        "2_20261128233947_job_events.py",
        "3_20261129003553_nexrender_compat.py",
        "4_20261129024323_worker_activity.py",
    ]
