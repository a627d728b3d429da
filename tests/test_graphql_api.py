"""The GraphQL API over HTTP against the real app: every operation, each role, the errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from domain.status import JobStatus
from models import Job, User
from testkit.sql_log import capture_sql
from tests.conftest import Account
from tests.graphql_client import GraphQLClient

JOB_FIELDS = """
  id projectName outputName templatePath dataPath outputPath status priority progress
  nexrenderJobId nexrenderConfig errorMessage logs queuedAt startedAt completedAt estimatedTime
  actualTime autoCancelAt cancelledReason createdAt updatedAt allowedTransitions queuePosition
  user { id email role }
"""
SUBMIT = f"mutation($input: SubmitJobInput!) {{ submitJob(input: $input) {{ {JOB_FIELDS} }} }}"
VALID_INPUT = {
    "projectName": "Promo",
    "outputName": "promo.mp4",
    "templatePath": "C:\\jobs\\promo.aep",
    "dataPath": "C:\\jobs\\promo.json",
    "outputPath": "C:\\renders\\promo.mp4",
}


async def submit(api: GraphQLClient, token: str, **overrides: Any) -> dict[str, Any]:
    response = await api(SUBMIT, {"input": {**VALID_INPUT, **overrides}}, token)
    assert not response.errors, response.errors
    return response.data["submitJob"]


async def claim(api: GraphQLClient, token: str) -> dict[str, Any] | None:
    response = await api("mutation { claimJob { id status } }", token=token)
    assert not response.errors, response.errors
    return response.data["claimJob"]


async def test_submit_returns_the_stored_job_with_every_field(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    config = {"template": {"src": "file:///C:/jobs/promo.aep", "composition": "main"}, "n": 1.5}
    job = await submit(
        api, accounts["user"].token, priority=7, nexrenderConfig=config, projectName=" Promo "
    )
    stored = await Job.get(id=job["id"])
    assert job["status"] == "QUEUED" == stored.status.value
    assert job["projectName"] == "Promo" and job["priority"] == 7 and job["progress"] == 0
    assert job["nexrenderConfig"] == config
    assert job["user"] == {"id": accounts["user"].id, "email": "user@example.com", "role": "USER"}
    assert job["allowedTransitions"] == ["RENDERING", "CANCELLED"]
    assert job["queuePosition"] == 1
    assert job["queuedAt"].endswith("+00:00")
    assert job["startedAt"] is None and job["logs"] is None


async def test_bad_input_is_bad_user_input_listing_every_field_and_writes_nothing(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    response = await api(
        SUBMIT,
        {"input": {**VALID_INPUT, "priority": 0, "outputName": "a/b.mp4", "projectName": " "}},
        accounts["user"].token,
    )
    assert response.codes == ["BAD_USER_INPUT"]
    fields = {item["field"] for item in response.errors[0]["extensions"]["fields"]}
    assert fields == {"priority", "outputName", "projectName"}
    assert "priority" in response.errors[0]["message"]
    assert await Job.all().count() == 0


async def test_a_wrongly_typed_variable_is_bad_user_input(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    response = await api(
        SUBMIT, {"input": {**VALID_INPUT, "priority": "high"}}, accounts["user"].token
    )
    assert response.codes == ["BAD_USER_INPUT"]
    assert await Job.all().count() == 0


async def test_a_business_rule_failure_is_a_failed_job_with_the_reasons(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job = await submit(api, accounts["user"].token, templatePath="promo.aep")
    assert job["status"] == "FAILED"
    assert "templatePath" in job["errorMessage"] or "template_path" in job["errorMessage"]
    assert job["allowedTransitions"] == ["PENDING"]


async def test_the_worker_flow_claim_progress_complete(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job = await submit(api, accounts["user"].token)
    claimed = await claim(api, accounts["worker"].token)
    assert claimed == {"id": job["id"], "status": "RENDERING"}
    assert await claim(api, accounts["worker"].token) is None

    progress = await api(
        'mutation($id: ID!) { reportProgress(id: $id, progress: 40, log: "frame 40") '
        "{ progress logs } }",
        {"id": job["id"]},
        accounts["worker"].token,
    )
    assert progress.data["reportProgress"]["progress"] == 40
    assert progress.data["reportProgress"]["logs"].endswith("frame 40")
    done = await api(
        "mutation($id: ID!) { completeJob(id: $id) { status progress actualTime completedAt } }",
        {"id": job["id"]},
        accounts["worker"].token,
    )
    assert done.data["completeJob"]["status"] == "COMPLETED"
    assert done.data["completeJob"]["progress"] == 100
    assert (await Job.get(id=job["id"])).worker_id == accounts["worker"].id


async def test_invalid_transition_names_both_statuses_and_changes_nothing(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    job = await submit(api, accounts["user"].token)
    response = await api(
        "mutation($id: ID!) { retryJob(id: $id) { status } }",
        {"id": job["id"]},
        accounts["user"].token,
    )
    assert response.codes == ["INVALID_TRANSITION"]
    extensions = response.errors[0]["extensions"]
    assert (extensions["from"], extensions["to"]) == ("QUEUED", "PENDING")
    assert "QUEUED" in response.errors[0]["message"]
    assert (await Job.get(id=job["id"])).status is JobStatus.QUEUED


# Each role against each operation: (operation, role) -> expected error code or None (allowed).
OPERATIONS: dict[str, tuple[str, dict[str, str | None]]] = {
    "submitJob": (
        SUBMIT,
        {"admin": None, "user": None, "worker": "FORBIDDEN", "other": None},
    ),
    "cancelJob": (
        'mutation($id: ID!) { cancelJob(id: $id, reason: "stop") { status } }',
        # A worker may see a QUEUED job (it may claim it), not manage it.
        {"admin": None, "user": None, "worker": "FORBIDDEN", "other": "NOT_FOUND"},
    ),
    "setJobPriority": (
        "mutation($id: ID!) { setJobPriority(id: $id, priority: 9) { priority } }",
        {"admin": None, "user": None, "worker": "FORBIDDEN", "other": "NOT_FOUND"},
    ),
    "claimJob": (
        "mutation { claimJob { id } }",
        {"admin": "FORBIDDEN", "user": "FORBIDDEN", "worker": None, "other": "FORBIDDEN"},
    ),
    "reportProgress": (
        "mutation($rendering: ID!) { reportProgress(id: $rendering, progress: 5) { progress } }",
        {
            "admin": None,
            "user": "FORBIDDEN",
            "worker": None,
            "other": "NOT_FOUND",
            "worker2": "NOT_FOUND",
        },
    ),
    "completeJob": (
        "mutation($rendering: ID!) { completeJob(id: $rendering) { status } }",
        {
            "admin": None,
            "user": "FORBIDDEN",
            "worker": None,
            "other": "NOT_FOUND",
            "worker2": "NOT_FOUND",
        },
    ),
    "failJob": (
        'mutation($rendering: ID!) { failJob(id: $rendering, error: "x") { status } }',
        {
            "admin": None,
            "user": "FORBIDDEN",
            "worker": None,
            "other": "NOT_FOUND",
            "worker2": "NOT_FOUND",
        },
    ),
    "users": (
        "query { users { email } }",
        {"admin": None, "user": "FORBIDDEN", "worker": "FORBIDDEN", "other": "FORBIDDEN"},
    ),
    "createUser": (
        'mutation { createUser(email: "new@example.com", role: USER) { token user { email } } }',
        {"admin": None, "user": "FORBIDDEN", "worker": "FORBIDDEN", "other": "FORBIDDEN"},
    ),
    "deactivateUser": (
        "mutation($target: ID!) { deactivateUser(userId: $target) { isActive } }",
        {"admin": None, "user": "FORBIDDEN", "worker": "FORBIDDEN", "other": "FORBIDDEN"},
    ),
}


async def _status(job_id: str) -> JobStatus:
    return (await Job.get(id=job_id)).status


async def _submitted(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert await Job.all().count() == 3 and data["submitJob"]["status"] == "QUEUED"


async def _cancelled(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert await _status(queued) is JobStatus.CANCELLED


async def _prioritised(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert (await Job.get(id=queued)).priority == 9


async def _claimed(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert data["claimJob"]["id"] == queued and await _status(queued) is JobStatus.RENDERING


async def _reported(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert (await Job.get(id=rendering)).progress == 5


async def _completed(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert await _status(rendering) is JobStatus.COMPLETED


async def _failed(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert await _status(rendering) is JobStatus.FAILED


async def _listed(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert {user["email"] for user in data["users"]} == {a.email for a in accounts.values()}


async def _created(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert await User.filter(email="new@example.com").exists()


async def _deactivated(data: dict, queued: str, rendering: str, accounts: dict) -> None:
    assert not (await User.get(id=accounts["other"].id)).is_active


# What an allowed operation must have done, so that "no error" alone never passes.
ALLOWED_EFFECTS = {
    "submitJob": _submitted,
    "cancelJob": _cancelled,
    "setJobPriority": _prioritised,
    "claimJob": _claimed,
    "reportProgress": _reported,
    "completeJob": _completed,
    "failJob": _failed,
    "users": _listed,
    "createUser": _created,
    "deactivateUser": _deactivated,
}
CASES = [
    (operation, role, code)
    for operation, (_, expectations) in OPERATIONS.items()
    for role, code in expectations.items()
]


@pytest.mark.parametrize(
    ("operation", "role", "code"), CASES, ids=[f"{o}-{r}" for o, r, _ in CASES]
)
async def test_each_role_against_each_operation(
    api: GraphQLClient, accounts: dict[str, Account], operation: str, role: str, code: str | None
) -> None:
    queued = await submit(api, accounts["user"].token)
    rendering = await submit(api, accounts["user"].token)
    await Job.filter(id=queued["id"]).update(priority=1)  # `rendering` is claimed first
    assert (await claim(api, accounts["worker"].token))["id"] == rendering["id"]
    before = {job.id: (job.status, job.priority, job.progress) for job in await Job.all()}
    users_before = await User.all().count()

    query, _ = OPERATIONS[operation]
    variables = {"id": queued["id"], "rendering": rendering["id"], "target": accounts["other"].id}
    if operation == "submitJob":
        variables = {"input": VALID_INPUT}
    used = {name: value for name, value in variables.items() if f"${name}" in query}
    response = await api(query, used, accounts[role].token)

    if code is None:
        assert not response.errors, response.errors
        await ALLOWED_EFFECTS[operation](response.data, queued["id"], rendering["id"], accounts)
        return
    assert response.codes == [code]
    assert {job.id: (job.status, job.priority, job.progress) for job in await Job.all()} == before
    assert await User.all().count() == users_before
    assert (await User.get(id=accounts["other"].id)).is_active


QUERIES_NEEDING_A_TOKEN = [
    "{ me { email } }",
    '{ job(id: "x") { id } }',
    "{ jobs { totalCount } }",
    "{ queue { id } }",
    "{ jobStats { total } }",
    "{ users { email } }",
    "mutation { claimJob { id } }",
]


@pytest.mark.parametrize("query", QUERIES_NEEDING_A_TOKEN)
@pytest.mark.parametrize("token", [None, "rt_not-a-token", "Basic abc"])
async def test_without_a_valid_token_every_field_is_unauthenticated(
    api: GraphQLClient, accounts: dict[str, Account], query: str, token: str | None
) -> None:
    response = await api(query, token=token)
    assert response.codes == ["UNAUTHENTICATED"]
    assert "Authorization: Bearer" in response.errors[0]["message"]


async def test_a_deactivated_users_token_stops_working_at_once(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    assert (await api("{ me { email } }", token=accounts["user"].token)).data["me"]["email"]
    response = await api(
        "mutation($id: ID!) { deactivateUser(userId: $id) { isActive } }",
        {"id": accounts["user"].id},
        accounts["admin"].token,
    )
    assert response.data["deactivateUser"]["isActive"] is False
    assert (await api("{ me { email } }", token=accounts["user"].token)).codes == [
        "UNAUTHENTICATED"
    ]


async def test_create_user_and_rotate_token(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    created = await api(
        'mutation { createUser(email: "New@Example.com", role: WORKER, name: "N") '
        "{ token user { id email role } } }",
        token=accounts["admin"].token,
    )
    new = created.data["createUser"]
    assert new["user"]["email"] == "new@example.com" and new["user"]["role"] == "WORKER"
    assert (await api("{ me { email } }", token=new["token"])).data["me"][
        "email"
    ] == "new@example.com"

    rotated = await api(
        "mutation($id: ID!) { rotateToken(userId: $id) { token } }",
        {"id": new["user"]["id"]},
        accounts["admin"].token,
    )
    fresh = rotated.data["rotateToken"]["token"]
    assert fresh != new["token"]
    assert (await api("{ me { email } }", token=new["token"])).codes == ["UNAUTHENTICATED"]
    assert (await api("{ me { email } }", token=fresh)).data["me"]["email"] == "new@example.com"

    duplicate = await api(
        'mutation { createUser(email: "new@example.com", role: USER) { token } }',
        token=accounts["admin"].token,
    )
    assert duplicate.codes == ["BAD_USER_INPUT"]
    assert duplicate.errors[0]["extensions"]["fields"][0]["field"] == "email"


async def test_another_users_job_is_null_for_job_and_absent_from_lists(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    mine = await submit(api, accounts["user"].token)
    theirs = await submit(api, accounts["other"].token)
    token = accounts["user"].token
    assert (await api("query($id: ID!) { job(id: $id) { id } }", {"id": theirs["id"]}, token)).data[
        "job"
    ] is None
    listed = await api("{ jobs { totalCount edges { node { id } } } }", token=token)
    assert [edge["node"]["id"] for edge in listed.data["jobs"]["edges"]] == [mine["id"]]
    assert listed.data["jobs"]["totalCount"] == 1
    everyone = await api("{ jobs { totalCount } }", token=accounts["admin"].token)
    assert everyone.data["jobs"]["totalCount"] == 2
    stats = await api("{ jobStats { queued total } }", token=token)
    assert stats.data["jobStats"] == {"queued": 1, "total": 1}
    refused = await api(
        "query($u: ID!) { jobs(filter: {userId: $u}) { totalCount } }",
        {"u": accounts["other"].id},
        token,
    )
    assert refused.codes == ["FORBIDDEN"]


async def test_filters_search_status_and_user(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    await submit(api, accounts["user"].token, projectName="Summer Promo")
    await submit(api, accounts["user"].token, outputName="WINTER_promo.mp4")
    await submit(
        api,
        accounts["other"].token,
        projectName="Trailer",
        outputName="t.mp4",
        templatePath="b.aep",
    )
    admin = accounts["admin"].token
    search = await api('{ jobs(filter: {search: "PROMO"}) { totalCount } }', token=admin)
    assert search.data["jobs"]["totalCount"] == 2
    failed = await api(
        "{ jobs(filter: {status: [FAILED]}) { edges { node { projectName } } } }", token=admin
    )
    assert [e["node"]["projectName"] for e in failed.data["jobs"]["edges"]] == ["Trailer"]
    by_user = await api(
        "query($u: ID!) { jobs(filter: {userId: $u}) { totalCount } }",
        {"u": accounts["other"].id},
        admin,
    )
    assert by_user.data["jobs"]["totalCount"] == 1
    me = await api("{ me { jobs { totalCount } } }", token=accounts["user"].token)
    assert me.data["me"]["jobs"]["totalCount"] == 2


async def test_queue_and_queue_position_follow_claim_order(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    low = await submit(api, accounts["user"].token, priority=1)
    high = await submit(api, accounts["other"].token, priority=9)
    mid = await submit(api, accounts["user"].token, priority=5)
    queue = await api("{ queue { id queuePosition } }", token=accounts["worker"].token)
    assert [(j["id"], j["queuePosition"]) for j in queue.data["queue"]] == [
        (high["id"], 1), (mid["id"], 2), (low["id"], 3),
    ]  # fmt: skip
    mine = await api("{ queue { id queuePosition } }", token=accounts["user"].token)
    assert [(j["id"], j["queuePosition"]) for j in mine.data["queue"]] == [
        (mid["id"], 2),
        (low["id"], 3),
    ]
    await claim(api, accounts["worker"].token)
    after = await api(
        "query($id: ID!) { job(id: $id) { queuePosition } }",
        {"id": low["id"]},
        accounts["user"].token,
    )
    assert after.data["job"]["queuePosition"] == 2


PAGE = """
query($first: Int, $after: String, $last: Int, $before: String) {
  jobs(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


@pytest.mark.slow
async def test_pagination_forward_and_back_over_250_jobs_with_inserts_between_pages(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    owner = await User.get(id=accounts["user"].id)
    from tests.factories import insert_job

    original = [(await insert_job(owner, status=JobStatus.QUEUED)).id for _ in range(250)]
    token = accounts["user"].token

    seen: list[str] = []
    after = None
    while True:
        page = (await api(PAGE, {"first": 40, "after": after}, token)).data["jobs"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        await insert_job(owner)  # newer than everything: must not shift the next page
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 250
    assert set(seen) == set(original)

    backwards: list[str] = []
    before = None
    while True:
        page = (await api(PAGE, {"last": 33, "before": before}, token)).data["jobs"]
        backwards = [edge["node"]["id"] for edge in page["edges"]] + backwards
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert len(backwards) == len(set(backwards)) == 250 + 7
    assert backwards[-250:] == seen  # the same order, newest first, the inserts ahead of them


async def test_first_is_capped_at_100_and_bad_cursors_are_refused(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    owner = await User.get(id=accounts["user"].id)
    from tests.factories import insert_job

    for _ in range(105):
        await insert_job(owner)
    page = (await api(PAGE, {"first": 500}, accounts["user"].token)).data["jobs"]
    assert len(page["edges"]) == 100 and page["pageInfo"]["hasNextPage"]
    bad = await api(PAGE, {"first": 5, "after": "nonsense"}, accounts["user"].token)
    assert bad.codes == ["BAD_USER_INPUT"]
    assert bad.errors[0]["extensions"]["fields"][0]["field"] == "after"


@contextmanager
def counting_sql() -> Iterator[list[str]]:
    statements: list[str] = []

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            statements.append(record.getMessage())

    logger = logging.getLogger("tortoise.db_client")
    handler, level = Counter(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield statements
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize("jobs_per_user", [2, 50])
async def test_a_page_with_owners_costs_a_constant_number_of_statements(
    api: GraphQLClient, accounts: dict[str, Account], jobs_per_user: int
) -> None:
    from tests.factories import insert_job

    for name in ("user", "other", "admin"):
        owner = await User.get(id=accounts[name].id)
        for _ in range(jobs_per_user):
            await insert_job(owner)
    query = "{ jobs(first: 100) { edges { node { id projectName user { email } } } } }"
    with counting_sql() as statements:
        response = await api(query, token=accounts["admin"].token)
    assert len(response.data["jobs"]["edges"]) == min(3 * jobs_per_user, 100)
    assert len(statements) <= 3, statements  # the token, the page, the owners


async def test_query_limits_depth_aliases_tokens_and_body_size(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    token = accounts["user"].token

    def nested(levels: int) -> str:
        return (
            "{ me { "
            + "jobs { edges { node { user { " * levels
            + "email"
            + " } } } }" * levels
            + " } }"
        )

    def aliased(count: int) -> str:
        return "{ " + " ".join(f"a{i}: me {{ email }}" for i in range(count)) + " }"

    def padded(values: int) -> str:
        return "{ jobs(filter: {status: [" + "QUEUED " * values + "]}) { totalCount } }"

    # Just inside each limit answers; just past it is refused, naming the limit.
    for query, refused, rule in [
        (nested(2), nested(3), "depth"),
        (aliased(20), aliased(21), "aliases"),
        (padded(1900), padded(2100), "token"),
    ]:
        assert not (await api(query, token=token)).errors
        response = await api(refused, token=token)
        # (three nested pages of jobs are over the cost budget too: test_query_cost.py)
        refusal = next(e for e in response.errors if rule in e["message"].lower())
        assert refusal["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", response.body
        assert response.data is None
    big = await api.http.post(
        "/graphql",
        content=b'{"query": "{ me { email } }", "pad": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert big.status_code == 413
    assert big.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_introspection_needs_a_token(
    api: GraphQLClient, accounts: dict[str, Account]
) -> None:
    query = "{ __schema { queryType { name } } }"
    assert (await api(query)).codes == ["UNAUTHENTICATED"]
    allowed = await api(query, token=accounts["user"].token)
    assert allowed.data["__schema"]["queryType"]["name"] == "Query"


async def test_graphiql_page_loads_without_a_token(api: GraphQLClient) -> None:
    page = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_an_unexpected_error_is_generic_for_the_client_and_logged(
    api: GraphQLClient, accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from service import queries

    async def broken(actor: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(queries, "job_stats", broken)
    with caplog.at_level(logging.ERROR, logger="rendertrack.graphql"):
        response = await api("{ jobStats { total } }", token=accounts["user"].token)
    assert response.codes == ["INTERNAL_SERVER_ERROR"]
    assert "secret detail" not in str(response.body)
    assert "secret detail" in caplog.text


def test_schema_graphql_is_what_the_code_exports() -> None:
    from gql.schema import schema

    checked_in = Path(__file__).resolve().parents[1] / "schema.graphql"
    assert checked_in.read_text() == schema.as_str() + "\n", "run `make schema` and commit it"


HOSTILE = [
    ('{ job(id: "a\\u0000b") { id } }', None),
    ('{ job(id: "%s") { id } }' % ("x" * 5000), None),
    ('mutation { cancelJob(id: "\\u0000", reason: "x") { id } }', "NOT_FOUND"),
    ('mutation { completeJob(id: "%s") { id } }' % ("y" * 300), "NOT_FOUND"),
    ('mutation { deactivateUser(userId: "\\u0000") { id } }', "NOT_FOUND"),
    ('{ jobs(filter: {search: "a\\u0000b"}) { totalCount } }', "BAD_USER_INPUT"),
    ('{ jobs(filter: {search: "%s"}) { totalCount } }' % ("s" * 300), "BAD_USER_INPUT"),
    ('{ jobs(filter: {userId: "\\u0000"}) { totalCount } }', "BAD_USER_INPUT"),
    ('{ jobs(after: "WyIyMDI2LTAxLTAxIiwiYQBiIl0=") { totalCount } }', "BAD_USER_INPUT"),
    ("{ jobs(first: 99999999999) { totalCount } }", "GRAPHQL_VALIDATION_FAILED"),
    ('{ jobs(filter: {createdAfter: "yesterday"}) { totalCount } }', "GRAPHQL_VALIDATION_FAILED"),
    ('mutation { createUser(email: "a\\u0000@x.com", role: USER) { token } }', "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("query", "code"), HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
async def test_hostile_input_gets_a_coded_answer_never_a_server_error(
    api: GraphQLClient, accounts: dict[str, Account], query: str, code: str | None
) -> None:
    response = await api(query, token=accounts["admin"].token)
    assert response.status == 200
    assert response.codes == ([code] if code else [])
    assert "INTERNAL_SERVER_ERROR" not in str(response.body)


async def test_a_body_that_is_not_utf8_is_a_400(api: GraphQLClient) -> None:
    response = await api.http.post(
        "/graphql",
        content=b'{"query": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


CLAIM_WITH_SPEC = {
    "directly": "mutation { claimJob { id nexrenderConfig } }",
    "in a fragment": (
        "mutation { claimJob { id ...Spec } } fragment Spec on Job { nexrenderConfig }"
    ),
}


@pytest.mark.parametrize("selection", list(CLAIM_WITH_SPEC))
async def test_a_claim_asking_for_the_render_spec_reads_it_with_the_claimed_row(
    api: GraphQLClient, accounts: dict[str, Account], selection: str
) -> None:
    config = {"template": {"src": "file:///C:/jobs/promo.aep", "composition": "main"}}
    first = await submit(api, accounts["user"].token, nexrenderConfig=config)
    second = await submit(api, accounts["user"].token, nexrenderConfig=config)
    worker = accounts["worker"].token
    with capture_sql() as plain:
        assert (await claim(api, worker)) == {"id": first["id"], "status": "RENDERING"}
    with capture_sql() as with_spec:
        response = await api(CLAIM_WITH_SPEC[selection], token=worker)
    assert not response.errors, response.errors
    assert response.data["claimJob"] == {"id": second["id"], "nexrenderConfig": config}
    assert len(with_spec) == len(plain)  # no statement of its own for the spec
