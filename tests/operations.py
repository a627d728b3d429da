"""GraphQL operations and small helpers the API and websocket tests share."""

from __future__ import annotations

from typing import Any

from tests.graphql_client import GraphQLClient

VALID_INPUT = {
    "projectName": "Promo",
    "outputName": "promo.mp4",
    "templatePath": "/mnt/jobs/promo.aep",
    "dataPath": "/mnt/jobs/promo.json",
    "outputPath": "/mnt/renders/promo.mp4",
}
SUBMIT = "mutation($input: SubmitJobInput!) { submitJob(input: $input) { id status } }"
CLAIM = "mutation { claimJob { id } }"
REPORT = "mutation($id: ID!, $p: Int!) { reportProgress(id: $id, progress: $p) { id } }"
COMPLETE = "mutation($id: ID!) { completeJob(id: $id) { id } }"
CREATE_USER = """
mutation($email: String!, $role: Role!) { createUser(email: $email, role: $role) { token } }
"""
JOB_UPDATED = """
subscription($id: ID!) {
  jobUpdated(id: $id) { kind sequence previousStatus at job { id status progress logs } }
}
"""


async def mutate(client: GraphQLClient, token: str, query: str, **variables: Any) -> dict:
    response = await client(query, variables, token)
    assert not response.errors, response.errors
    return response.data


async def submit(client: GraphQLClient, token: str, **overrides: Any) -> str:
    data = await mutate(client, token, SUBMIT, input={**VALID_INPUT, **overrides})
    return data["submitJob"]["id"]


def event_of(payload: dict[str, Any], field: str = "jobUpdated") -> tuple:
    """(kind, status, progress, previousStatus) of one subscription result."""
    assert not payload.get("errors"), payload
    event = payload["data"][field]
    return (
        event["kind"],
        event["job"]["status"],
        event["job"]["progress"],
        event["previousStatus"],
    )
