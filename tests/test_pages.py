"""The pages' HTTP answers: the dashboard at `/` and every file under /static carry the pages'
headers (no framing, no other origin, no sniffing), whichever address reaches them."""

from __future__ import annotations

import re

import pytest

from tests.graphql_client import GraphQLClient


@pytest.mark.parametrize(
    "path",
    ["/", "/static/dashboard/index.html", "/static/dashboard/app.js", "/static/graphiql/page.js"],
)
async def test_every_page_and_file_is_closed_to_framing_and_other_origins(
    api: GraphQLClient, path: str
) -> None:
    response = await api.http.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_the_dashboard_names_only_files_that_exist(api: GraphQLClient) -> None:
    page = (await api.http.get("/")).text
    linked = re.findall(r'(?:href|src)="(/[^"]+)"', page)
    assert "/static/graphiql/favicon.svg" in linked
    for path in linked:
        assert (await api.http.get(path)).status_code == 200, path
