"""The queue's leases as a client meets them over GraphQL (the in-process app): claims, heartbeats,
hand-backs, retryable failures and their backoff, max attempts, a cancelled job's holder, the
lazily read nexrenderConfig, and the settings that tune all of it.

Time is moved with service.clock, never waited for.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.settings import MIN_LOG_LIMIT_BYTES, Settings
from domain.joblog import DEFAULT_LOG_LIMIT_BYTES
from models import Job
from service import clock, settings
from service.events import RecordingPublisher
from tests.conftest import Account
from tests.graphql_client import GraphQLClient
from tests.operations import VALID_INPUT, mutate, submit

LEASE = "id status attempts lease maxAttempts heartbeatAt notBefore startedAt queuedAt progress"
CLAIM = f"mutation {{ claimJob {{ {LEASE} worker {{ id name }} }} }}"
HEARTBEAT = f"mutation($id: ID!) {{ heartbeat(id: $id) {{ {LEASE} }} }}"
REQUEUE = (
    f"mutation($id: ID!) {{ requeueJob(id: $id) {{ {LEASE} worker {{ id }} queuePosition }} }}"
)
FAIL = f"""
mutation($id: ID!, $error: String!, $retryable: Boolean!) {{
  failJob(id: $id, error: $error, retryable: $retryable) {{ {LEASE} errorMessage logs }}
}}
"""
CANCEL = 'mutation($id: ID!) { cancelJob(id: $id, reason: "client changed the brief") { id } }'
JOB = f"query($id: ID!) {{ job(id: $id) {{ {LEASE} queuePosition worker {{ id }} }} }}"
SUBMIT = """
mutation($input: SubmitJobInput!) { submitJob(input: $input) { id status maxAttempts attempts } }
"""


@pytest.fixture
def service_clock() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


def at(answer: str | None) -> datetime:
    assert answer is not None
    return datetime.fromisoformat(answer)


def close_to(answer: str | None, expected: datetime, seconds: float = 2.0) -> bool:
    return abs((at(answer) - expected).total_seconds()) <= seconds


async def claim(api: GraphQLClient, account: Account) -> dict[str, Any] | None:
    return (await mutate(api, account.token, CLAIM))["claimJob"]


async def job_of(api: GraphQLClient, token: str, job_id: str) -> dict[str, Any]:
    response = await api(JOB, {"id": job_id}, token)
    assert not response.errors, response.errors
    return response.data["job"]


async def fail(
    api: GraphQLClient, token: str, job_id: str, error: str, *, retryable: bool
) -> dict[str, Any]:
    data = await mutate(api, token, FAIL, id=job_id, error=error, retryable=retryable)
    return data["failJob"]


async def row(job_id: str) -> tuple[Any, ...]:
    job = await Job.get(id=job_id)
    return (
        job.status,
        job.sequence,
        job.updated_at,
        job.progress,
        job.attempts,
        job.heartbeat_at,
        job.worker_id,
        job.not_before,
        job.error_message,
        job.log_bytes,
    )


# --- claim and heartbeat ---------------------------------------------------------------------


async def test_a_claim_answers_the_lease(
    api: GraphQLClient, accounts: dict[str, Account], service_clock: None
) -> None:
    job_id = await submit(api, accounts["user"].token)
    before = clock.now()
    claimed = await claim(api, accounts["worker"])
    assert claimed is not None and claimed["id"] == job_id
    assert claimed["status"] == "RENDERING"
    assert claimed["attempts"] == 1 and claimed["maxAttempts"] == 3
    assert before <= at(claimed["heartbeatAt"]) <= clock.now()
    assert claimed["heartbeatAt"] == claimed["startedAt"]
    assert claimed["notBefore"] is None
    assert claimed["worker"] == {"id": accounts["worker"].id, "name": "worker"}
    stored = await Job.get(id=job_id)
    assert stored.worker_id == accounts["worker"].id and stored.attempts == 1
    # The owner reads who renders it.
    assert (await job_of(api, accounts["user"].token, job_id))["worker"] == {
        "id": accounts["worker"].id
    }


async def test_a_heartbeat_renews_the_lease_without_an_event_or_a_sequence(
    api: GraphQLClient,
    accounts: dict[str, Account],
    recorder: RecordingPublisher,
    service_clock: None,
) -> None:
    job_id = await submit(api, accounts["user"].token)
    claimed = await claim(api, accounts["worker"])
    before = await Job.get(id=job_id)
    recorder.clear()

    clock.advance(45)
    beat = (await mutate(api, accounts["worker"].token, HEARTBEAT, id=job_id))["heartbeat"]
    assert close_to(beat["heartbeatAt"], at(claimed["heartbeatAt"]) + timedelta(seconds=45))
    assert (beat["status"], beat["progress"], beat["attempts"]) == ("RENDERING", 0, 1)
    after = await Job.get(id=job_id)
    assert after.heartbeat_at == at(beat["heartbeatAt"])
    assert after.heartbeat_at > before.heartbeat_at
    assert after.sequence == before.sequence
    assert after.updated_at == before.updated_at
    assert recorder.events == []


async def test_only_the_holder_or_an_admin_sends_heartbeats(
    api: GraphQLClient, accounts: dict[str, Account], service_clock: None
) -> None:
    job_id = await submit(api, accounts["user"].token)
    await claim(api, accounts["worker"])
    before = await row(job_id)
    for name, code in (("worker2", "NOT_FOUND"), ("user", "FORBIDDEN")):
        response = await api(HEARTBEAT, {"id": job_id}, accounts[name].token)
        assert response.codes == [code], name
    assert await row(job_id) == before
    clock.advance(5)
    beat = await mutate(api, accounts["admin"].token, HEARTBEAT, id=job_id)
    assert at(beat["heartbeat"]["heartbeatAt"]) > before[5]


async def test_a_heartbeat_on_a_queued_job_is_an_invalid_transition(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(api, accounts["user"].token)
    before = await row(job_id)
    response = await api(HEARTBEAT, {"id": job_id}, accounts["admin"].token)
    assert response.codes == ["INVALID_TRANSITION"]
    assert response.errors[0]["extensions"]["from"] == "QUEUED"
    assert await row(job_id) == before


# --- requeue ---------------------------------------------------------------------------------


async def test_the_holder_hands_a_job_back_keeping_its_place(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user = accounts["user"].token
    first = await submit(api, user)
    second = await submit(api, user)
    queued = await job_of(api, user, first)
    assert queued["queuePosition"] == 1
    assert (await claim(api, accounts["worker"]))["id"] == first
    await mutate(
        api,
        accounts["worker"].token,
        "mutation($id: ID!) { reportProgress(id: $id, progress: 30) { id } }",
        id=first,
    )
    assert (await job_of(api, user, second))["queuePosition"] == 1

    back = (await mutate(api, accounts["worker"].token, REQUEUE, id=first))["requeueJob"]
    assert back["status"] == "QUEUED" and back["worker"] is None
    assert back["attempts"] == 0
    assert back["queuedAt"] == queued["queuedAt"]
    assert back["queuePosition"] == 1
    assert back["progress"] == 0
    assert back["startedAt"] is None and back["heartbeatAt"] is None
    assert (await job_of(api, user, second))["queuePosition"] == 2
    stored = await Job.get(id=first)
    assert stored.status.value == "QUEUED" and stored.worker_id is None and stored.attempts == 0
    log = (await api("query($id: ID!) { job(id: $id) { logs } }", {"id": first}, user)).data
    assert "handed back" in log["job"]["logs"]
    # The next claim takes it again, as its first attempt.
    again = await claim(api, accounts["worker2"])
    assert again["id"] == first and again["attempts"] == 1


async def test_an_admin_takes_a_job_back(api: GraphQLClient, accounts: dict[str, Account]) -> None:
    job_id = await submit(api, accounts["user"].token)
    await claim(api, accounts["worker"])
    back = (await mutate(api, accounts["admin"].token, REQUEUE, id=job_id))["requeueJob"]
    assert (back["status"], back["worker"], back["attempts"]) == ("QUEUED", None, 0)
    assert (await Job.get(id=job_id)).worker_id is None


@pytest.mark.parametrize(("who", "code"), [("worker2", "NOT_FOUND"), ("user", "FORBIDDEN")])
async def test_only_the_holder_or_an_admin_requeues(
    api: GraphQLClient, accounts: dict[str, Account], who: str, code: str
) -> None:
    job_id = await submit(api, accounts["user"].token)
    await claim(api, accounts["worker"])
    before = await row(job_id)
    response = await api(REQUEUE, {"id": job_id}, accounts[who].token)
    assert response.codes == [code]
    assert await row(job_id) == before


async def test_requeueing_a_queued_job_is_an_invalid_transition(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(api, accounts["user"].token)
    before = await row(job_id)
    response = await api(REQUEUE, {"id": job_id}, accounts["admin"].token)
    assert response.codes == ["INVALID_TRANSITION"]
    extensions = response.errors[0]["extensions"]
    assert (extensions["from"], extensions["to"]) == ("QUEUED", "QUEUED")
    assert await row(job_id) == before


# --- failures, backoff and attempts ----------------------------------------------------------


async def test_retryable_failures_back_off_doubling_then_fail_on_the_last_attempt(
    api: GraphQLClient, accounts: dict[str, Account], service_clock: None
) -> None:
    worker = accounts["worker"]
    job_id = await submit(api, accounts["user"].token)
    assert (await claim(api, worker))["attempts"] == 1

    # Attempt 1 of 3 fails: back to the queue, not handed out for 10 s.
    failed_at = clock.now()
    first = await fail(api, worker.token, job_id, "GPU driver crashed", retryable=True)
    assert first["status"] == "QUEUED" and first["errorMessage"] is None
    assert first["attempts"] == 1 and first["heartbeatAt"] is None
    assert close_to(first["notBefore"], failed_at + timedelta(seconds=10))
    assert "GPU driver crashed" in first["logs"].split("\n")[-1]
    assert await claim(api, worker) is None
    clock.advance(8)
    assert await claim(api, accounts["worker2"]) is None
    clock.advance(3)
    second_claim = await claim(api, accounts["worker2"])
    assert second_claim["id"] == job_id and second_claim["attempts"] == 2
    assert second_claim["notBefore"] is None

    # Attempt 2 fails: twice as long.
    failed_at = clock.now()
    second = await fail(api, accounts["worker2"].token, job_id, "out of VRAM", retryable=True)
    assert second["status"] == "QUEUED"
    assert close_to(second["notBefore"], failed_at + timedelta(seconds=20))
    clock.advance(18)
    assert await claim(api, worker) is None
    clock.advance(3)
    assert (await claim(api, worker))["attempts"] == 3

    # Attempt 3 of 3 fails: no attempts left.
    last = await fail(api, worker.token, job_id, "GPU driver crashed again", retryable=True)
    assert last["status"] == "FAILED"
    assert "GPU driver crashed again" in last["errorMessage"]
    assert "no attempts left" in last["errorMessage"]
    stored = await Job.get(id=job_id)
    assert stored.status.value == "FAILED" and stored.completed_at is not None
    assert stored.error_message == last["errorMessage"]

    # A retry starts afresh: attempts cleared, claimable at once, the failures still logged.
    retried = await mutate(
        api,
        accounts["user"].token,
        "mutation($id: ID!) { retryJob(id: $id) { status attempts notBefore logs } }",
        id=job_id,
    )
    assert retried["retryJob"]["status"] == "QUEUED"
    assert (retried["retryJob"]["attempts"], retried["retryJob"]["notBefore"]) == (0, None)
    assert "out of VRAM" in retried["retryJob"]["logs"]
    assert (await claim(api, worker))["attempts"] == 1


async def test_a_job_in_backoff_lets_the_next_one_be_claimed(
    api: GraphQLClient, accounts: dict[str, Account], service_clock: None
) -> None:
    urgent = await submit(api, accounts["user"].token, priority=9)
    await claim(api, accounts["worker"])
    await fail(api, accounts["worker"].token, urgent, "node lost its licence", retryable=True)
    later = await submit(api, accounts["user"].token, priority=1)
    assert (await claim(api, accounts["worker"]))["id"] == later
    assert await claim(api, accounts["worker2"]) is None
    clock.advance(11)
    assert (await claim(api, accounts["worker2"]))["id"] == urgent


async def test_a_failure_that_is_not_retryable_fails_the_job(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(api, accounts["user"].token)
    await claim(api, accounts["worker"])
    failed = await fail(api, accounts["worker"].token, job_id, "template missing", retryable=False)
    assert failed["status"] == "FAILED" and failed["errorMessage"] == "template missing"
    assert failed["attempts"] == 1 and failed["notBefore"] is None
    assert await claim(api, accounts["worker"]) is None
    # Without `retryable` a failure is final too.
    second = await submit(api, accounts["user"].token)
    await claim(api, accounts["worker"])
    response = await api(
        'mutation($id: ID!) { failJob(id: $id, error: "boom") { status errorMessage } }',
        {"id": second},
        accounts["worker"].token,
    )
    assert response.data["failJob"] == {"status": "FAILED", "errorMessage": "boom"}


async def test_the_backoff_follows_the_servers_setting(
    api: GraphQLClient, accounts: dict[str, Account], service_clock: None
) -> None:
    previous = settings.configure(dataclasses.replace(settings.current(), retry_backoff_seconds=30))
    try:
        job_id = await submit(api, accounts["user"].token)
        await claim(api, accounts["worker"])
        failed_at = clock.now()
        failed = await fail(api, accounts["worker"].token, job_id, "flaky", retryable=True)
    finally:
        settings.configure(previous)
    assert close_to(failed["notBefore"], failed_at + timedelta(seconds=30))


async def test_max_attempts_one_fails_on_the_first_retryable_failure(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job_id = await submit(api, accounts["user"].token, maxAttempts=1)
    await claim(api, accounts["worker"])
    failed = await fail(api, accounts["worker"].token, job_id, "flaky", retryable=True)
    assert failed["status"] == "FAILED" and "no attempts left" in failed["errorMessage"]


@pytest.mark.parametrize("value", [0, 11, -1])
async def test_max_attempts_out_of_range_is_bad_user_input_and_creates_nothing(
    api: GraphQLClient, accounts: dict[str, Account], value: int
) -> None:
    response = await api(
        SUBMIT, {"input": {**VALID_INPUT, "maxAttempts": value}}, accounts["user"].token
    )
    assert response.codes == ["BAD_USER_INPUT"]
    fields = [item["field"] for item in response.errors[0]["extensions"]["fields"]]
    assert fields == ["maxAttempts"]
    assert "maxAttempts" in response.errors[0]["message"]
    assert await Job.all().count() == 0


async def test_max_attempts_of_the_wrong_type_is_bad_user_input_and_creates_nothing(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    response = await api(
        SUBMIT, {"input": {**VALID_INPUT, "maxAttempts": "x"}}, accounts["user"].token
    )
    assert response.codes == ["BAD_USER_INPUT"]
    # Refused by GraphQL's own type check, before the service sees it: the message names the
    # field (no `fields` list, as for every wrongly typed variable).
    assert "maxAttempts" in response.errors[0]["message"]
    assert await Job.all().count() == 0


async def test_max_attempts_of_the_wrong_type_lists_the_field(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    response = await api(
        SUBMIT, {"input": {**VALID_INPUT, "maxAttempts": "x"}}, accounts["user"].token
    )
    assert response.codes == ["BAD_USER_INPUT"]
    fields = [item["field"] for item in response.errors[0]["extensions"].get("fields", [])]
    assert fields == ["maxAttempts"]


async def test_max_attempts_one_to_ten_is_stored_and_answered(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    for value in range(1, 11):
        data = await mutate(
            api, accounts["user"].token, SUBMIT, input={**VALID_INPUT, "maxAttempts": value}
        )
        job = data["submitJob"]
        assert (job["status"], job["maxAttempts"], job["attempts"]) == ("QUEUED", value, 0)
        assert (await Job.get(id=job["id"])).max_attempts == value
    default = await mutate(api, accounts["user"].token, SUBMIT, input=VALID_INPUT)
    assert default["submitJob"]["maxAttempts"] == 3


# --- the holder of a cancelled job -----------------------------------------------------------

AFTER_CANCEL = {
    "reportProgress": "mutation($id: ID!) { reportProgress(id: $id, progress: 60) { id } }",
    "reportProgress with a log": (
        'mutation($id: ID!) { reportProgress(id: $id, progress: 60, log: "frame 60") { id } }'
    ),
    "heartbeat": "mutation($id: ID!) { heartbeat(id: $id) { id } }",
    "completeJob": "mutation($id: ID!) { completeJob(id: $id) { id } }",
    "failJob": 'mutation($id: ID!) { failJob(id: $id, error: "aerender died") { id } }',
    "failJob retryable": (
        'mutation($id: ID!) { failJob(id: $id, error: "aerender died", retryable: true) { id } }'
    ),
    "requeueJob": "mutation($id: ID!) { requeueJob(id: $id) { id } }",
}


@pytest.mark.parametrize("operation", sorted(AFTER_CANCEL))
async def test_the_holder_of_a_cancelled_job_is_told_it_was_cancelled(
    api: GraphQLClient, accounts: dict[str, Account], operation: str
) -> None:
    job_id = await submit(api, accounts["user"].token)
    await claim(api, accounts["worker"])
    await mutate(
        api,
        accounts["worker"].token,
        "mutation($id: ID!) { reportProgress(id: $id, progress: 40) { id } }",
        id=job_id,
    )
    await mutate(api, accounts["user"].token, CANCEL, id=job_id)
    before = await row(job_id)
    response = await api(AFTER_CANCEL[operation], {"id": job_id}, accounts["worker"].token)
    assert response.codes == ["INVALID_TRANSITION"]
    assert response.errors[0]["extensions"]["from"] == "CANCELLED"
    assert "CANCELLED" in response.errors[0]["message"]
    assert await row(job_id) == before
    assert before[0].value == "CANCELLED" and before[3] == 40


# --- nexrenderConfig, read only when asked for -----------------------------------------------

CONFIG_A = {"template": {"src": "file:///mnt/jobs/a.aep", "composition": "main"}, "n": 1.5}
CONFIG_B = {"template": {"src": "file:///mnt/jobs/b.aep", "composition": "alt"}, "big": 1e308}


async def test_nexrender_config_is_answered_wherever_a_job_is(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    user = accounts["user"].token
    submitted = await api(
        "mutation($input: SubmitJobInput!) { submitJob(input: $input) { id nexrenderConfig } }",
        {"input": {**VALID_INPUT, "nexrenderConfig": CONFIG_A}},
        user,
    )
    assert not submitted.errors, submitted.errors
    a = submitted.data["submitJob"]["id"]
    assert submitted.data["submitJob"]["nexrenderConfig"] == CONFIG_A
    b = await submit(api, user, nexrenderConfig=CONFIG_B)
    none = await submit(api, user)

    for job_id, config in ((a, CONFIG_A), (b, CONFIG_B), (none, None)):
        response = await api(
            "query($id: ID!) { job(id: $id) { nexrenderConfig } }", {"id": job_id}, user
        )
        assert response.data["job"]["nexrenderConfig"] == config

    page = await api(
        "{ jobs(first: 5, orderBy: OLDEST_FIRST) { edges { node { id nexrenderConfig } } } }",
        token=user,
    )
    assert [edge["node"] for edge in page.data["jobs"]["edges"]] == [
        {"id": a, "nexrenderConfig": CONFIG_A},
        {"id": b, "nexrenderConfig": CONFIG_B},
        {"id": none, "nexrenderConfig": None},
    ]
    queue = await api("{ queue(first: 5) { id nexrenderConfig } }", token=accounts["admin"].token)
    assert [job["nexrenderConfig"] for job in queue.data["queue"]] == [CONFIG_A, CONFIG_B, None]

    claimed = await mutate(
        api, accounts["worker"].token, "mutation { claimJob { id nexrenderConfig } }"
    )
    assert claimed["claimJob"] == {"id": a, "nexrenderConfig": CONFIG_A}
    reported = await mutate(
        api,
        accounts["worker"].token,
        "mutation($id: ID!) { reportProgress(id: $id, progress: 5) { nexrenderConfig } }",
        id=a,
    )
    assert reported["reportProgress"]["nexrenderConfig"] == CONFIG_A


# --- settings --------------------------------------------------------------------------------

VARIABLES = (
    "RENDERTRACK_STALL_TIMEOUT",
    "RENDERTRACK_RETRY_BACKOFF",
    "RENDERTRACK_SWEEP_INTERVAL",
    "RENDERTRACK_LOG_LIMIT",
)


def test_the_queue_settings_have_defaults() -> None:
    loaded = Settings.from_env({})
    assert loaded.stall_timeout_seconds == 600
    assert loaded.retry_backoff_seconds == 10
    assert loaded.sweep_interval_seconds == 5
    assert loaded.log_limit_bytes == DEFAULT_LOG_LIMIT_BYTES == 256 * 1024
    blank = Settings.from_env(dict.fromkeys(VARIABLES, "  "))
    assert dataclasses.astuple(blank) == dataclasses.astuple(loaded)


def test_the_queue_settings_are_read_and_handed_to_the_service() -> None:
    loaded = Settings.from_env(
        {
            "RENDERTRACK_STALL_TIMEOUT": " 120 ",
            "RENDERTRACK_RETRY_BACKOFF": "0",
            "RENDERTRACK_SWEEP_INTERVAL": "0.5",
            "RENDERTRACK_LOG_LIMIT": str(MIN_LOG_LIMIT_BYTES),
        }
    )
    assert loaded.stall_timeout_seconds == 120
    assert loaded.retry_backoff_seconds == 0
    assert loaded.sweep_interval_seconds == 0.5
    assert loaded.log_limit_bytes == MIN_LOG_LIMIT_BYTES
    service = loaded.service_settings()
    assert service.stall_timeout_seconds == 120
    assert service.retry_backoff_seconds == 0
    assert service.log_limit_bytes == MIN_LOG_LIMIT_BYTES
    assert Settings.from_env({"RENDERTRACK_RETRY_BACKOFF": "2.5"}).retry_backoff_seconds == 2.5
    assert Settings.from_env({"RENDERTRACK_LOG_LIMIT": "1048576"}).log_limit_bytes == 1048576


INVALID = [
    *(
        ("RENDERTRACK_STALL_TIMEOUT", value)
        for value in ("abc", "-1", "0", "nan", "inf", "-inf", "1e400", "10s")
    ),
    *(("RENDERTRACK_RETRY_BACKOFF", value) for value in ("abc", "-1", "-0.5", "nan", "inf")),
    *(("RENDERTRACK_SWEEP_INTERVAL", value) for value in ("abc", "-1", "0", "0.0", "nan", "inf")),
    *(
        ("RENDERTRACK_LOG_LIMIT", value)
        for value in ("abc", "-1", "0", "nan", "1024", str(MIN_LOG_LIMIT_BYTES - 1), "16384.0")
    ),
]


@pytest.mark.parametrize(("variable", "value"), INVALID)
def test_an_invalid_queue_setting_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable) as refused:
        Settings.from_env({variable: value})
    assert repr(value.strip()) in str(refused.value)


def test_a_log_limit_of_superscript_digits_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="RENDERTRACK_LOG_LIMIT"):
        Settings.from_env({"RENDERTRACK_LOG_LIMIT": "²⁰⁰⁰⁰⁰"})


def rendertrack(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "rendertrack"
    assert script.exists(), script
    return subprocess.run(
        [str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def clean_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")}


def test_serve_help_lists_the_queue_settings(tmp_path: Path) -> None:
    result = rendertrack("serve", "--help", env=clean_environment(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for variable in VARIABLES:
        assert variable in result.stdout, variable


def test_the_command_refuses_a_bad_queue_setting_in_one_line(tmp_path: Path) -> None:
    env = {**clean_environment(), "RENDERTRACK_STALL_TIMEOUT": "soon"}
    env["RENDERTRACK_DATABASE_URL"] = f"sqlite://{tmp_path / 'never.sqlite3'}"
    result = rendertrack("users", "list", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert "RENDERTRACK_STALL_TIMEOUT" in result.stderr and "'soon'" in result.stderr
    assert not (tmp_path / "never.sqlite3").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RENDERTRACK_STALL_TIMEOUT", "1e11"),  # would overflow the dates the sweeper computes
        ("RENDERTRACK_STALL_TIMEOUT", "604801"),
        ("RENDERTRACK_RETRY_BACKOFF", "1e300"),
        ("RENDERTRACK_RETRY_BACKOFF", "86401"),
        ("RENDERTRACK_SWEEP_INTERVAL", "0.000001"),  # would spin the CPU
        ("RENDERTRACK_SWEEP_INTERVAL", "3601"),
        ("RENDERTRACK_LOG_LIMIT", "99999999999999999999999"),  # past the int column
        ("RENDERTRACK_LOG_LIMIT", "16384"),  # a trim could drop the longest line at once
    ],
)
def test_settings_out_of_their_range_are_refused_naming_the_range(
    variable: str, value: str
) -> None:
    with pytest.raises(ValueError) as refused:
        Settings.from_env({variable: value})
    assert variable in str(refused.value) and " to " in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("RENDERTRACK_STALL_TIMEOUT", "604800", "stall_timeout_seconds", 604800.0),
        ("RENDERTRACK_RETRY_BACKOFF", "0", "retry_backoff_seconds", 0.0),
        ("RENDERTRACK_SWEEP_INTERVAL", "0.1", "sweep_interval_seconds", 0.1),
        ("RENDERTRACK_LOG_LIMIT", "65536", "log_limit_bytes", 65536),
    ],
)
def test_settings_at_the_edges_of_their_range_are_taken(
    variable: str, value: str, attribute: str, expected: float
) -> None:
    assert getattr(Settings.from_env({variable: value}), attribute) == expected


STALE_REPORT = """
mutation($id: ID!, $lease: Int!) { reportProgress(id: $id, progress: 90, lease: $lease) { id } }
"""


async def test_a_report_under_an_older_lease_is_a_conflict(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    """Node A's job is taken back by an admin and claimed again by node B on the same account:
    A's report, naming its lease, is refused and changes nothing; B's lands."""
    worker, admin = accounts["worker"], accounts["admin"]
    job_id = await submit(api, accounts["user"].token)
    first = await claim(api, worker)
    assert first is not None and first["id"] == job_id and first["lease"] == 1
    await mutate(api, admin.token, REQUEUE, id=job_id)
    second = await claim(api, worker)
    assert second is not None and (second["attempts"], second["lease"]) == (1, 2)

    stale = await api(STALE_REPORT, {"id": job_id, "lease": 1}, worker.token)
    assert stale.codes == ["CONFLICT"]
    assert "lease 1 was lost" in stale.errors[0]["message"]
    assert (await job_of(api, admin.token, job_id))["progress"] == 0

    current = await api(STALE_REPORT, {"id": job_id, "lease": 2}, worker.token)
    assert not current.errors
    assert (await job_of(api, admin.token, job_id))["progress"] == 90


async def test_the_queue_lists_jobs_in_the_order_claims_will_take_them(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    """A job waiting out a retry backoff comes after every job a claim could take now."""
    user, worker = accounts["user"].token, accounts["worker"]
    waiting = await submit(api, user, priority=10)
    assert (await claim(api, worker))["id"] == waiting
    await fail(api, worker.token, waiting, "GPU driver reset", retryable=True)
    low = await submit(api, user, priority=1)
    high = await submit(api, user, priority=9)
    listed = await api("{ queue { id queuePosition } }", token=accounts["admin"].token)
    assert [(job["id"], job["queuePosition"]) for job in listed.data["queue"]] == [
        (high, 1),
        (low, 2),
        (waiting, None),
    ]
    assert (await claim(api, worker))["id"] == high
