"""GraphiQL at /graphql works on a network without internet (issue 12): every file of the page
is served by rendertrack itself from app/static/graphiql/, and a real headless Chromium that
may reach nothing but the server runs a query and a subscription from it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry

from service import jobs
from tests.browser import chromium, screenshot_path
from tests.conftest import Account
from tests.factories import valid_submission
from tests.live_server import LiveServer

PAGE_WAIT_MS = 8000
TEMPLATE = Path(__file__).resolve().parents[1] / "gql" / "graphiql.html"
STRAWBERRY_TEMPLATE = Path(strawberry.__file__).resolve().parent / "static" / "graphiql.html"
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".svg": ("image/svg+xml",),
}
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
# GraphiQL keeps the variables and the headers editors in one pane and hides the inactive one.
TOOL_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESULT = ".graphiql-response .CodeMirror"


def referenced(html: str) -> list[tuple[str, str | None]]:
    """(URL, integrity) of every script and stylesheet or icon link of the page."""
    found = []
    for tag in re.findall(r"<(?:script|link)\b[^>]*>", html):
        url = re.search(r'\b(?:src|href)="([^"]+)"', tag)
        integrity = re.search(r'\bintegrity="([^"]+)"', tag)
        if url:
            found.append((url.group(1), integrity.group(1) if integrity else None))
    return found


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


async def raw_get(server: LiveServer, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written: an HTTP client would remove its `..` segments."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest


async def test_the_page_names_no_other_origin_and_every_file_it_loads_is_served(
    live: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=live.http_url, timeout=10) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://", page.text), "the page names another origin"
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "default-src 'self'" in policy
        files = referenced(page.text)
        assert len(files) == 9, files  # react, react-dom, js-cookie, 2+2 GraphiQL, page.js, icon
        for url, integrity in files:
            assert url.startswith("/static/graphiql/"), url
            response = await client.get(url)
            assert response.status_code == 200, url
            content_type = response.headers["content-type"].split(";")[0]
            assert content_type in CONTENT_TYPES[Path(url).suffix], (url, content_type)
            if integrity is not None:
                assert sri(response.content) == integrity, f"{url} does not match its hash"
        script = (await client.get("/static/graphiql/page.js")).text
        assert not re.search(r"https?://", script)


def test_the_page_loads_the_very_files_strawberrys_page_pins() -> None:
    """Strawberry's page and ours name the same files, by their hashes: an upgrade of Strawberry
    that moves GraphiQL on shows here (refresh with `make graphiql-assets`)."""

    def hashes(path: Path) -> set[str]:
        return set(re.findall(r'integrity="([^"]+)"', path.read_text(encoding="utf-8")))

    assert hashes(TEMPLATE) == hashes(STRAWBERRY_TEMPLATE)
    assert len(hashes(TEMPLATE)) == 7


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pages.py",
        "/static/graphiql/../../pages.py",
        "/static/../app/pages.py",
        "/static/%2e%2e/pages.py",
        "/static/graphiql/%2e%2e/%2e%2e/pages.py",
        "/static/..%2fpages.py",
        "/static/graphiql/..%2f..%2fpages.py",
        "/static/%2e%2e%2fpages.py",
        "/static/graphiql/..%5c..%5cpages.py",
        "/static/%252e%252e/pages.py",
    ],
)
async def test_a_path_out_of_the_static_folder_is_not_found(live: LiveServer, path: str) -> None:
    status, body = await raw_get(live, path)
    assert status == 404, (path, body[:200])
    assert b"page_routes" not in body


async def set_editor(page: Any, selector: str, text: str) -> None:
    await page.evaluate(
        "([selector, text]) => document.querySelector(selector).CodeMirror.setValue(text)",
        [selector, text],
    )


async def wait_for_result(page: Any, *fragments: str) -> str:
    """The result pane's text, once it holds every fragment."""
    await page.wait_for_function(
        """([selector, fragments]) => {
            const result = document.querySelector(selector);
            const text = result ? result.CodeMirror.getValue() : "";
            return fragments.every((fragment) => text.includes(fragment));
        }""",
        arg=[RESULT, list(fragments)],
        timeout=PAGE_WAIT_MS,
    )
    return await page.evaluate(f"document.querySelector({RESULT!r}).CodeMirror.getValue()")


async def run(page: Any, query: str, kind: str) -> None:
    """Runs `query`, an operation of `kind`, once GraphiQL has parsed it: it reads the text at
    once but parses it after a pause, and the parsed document decides whether the operation
    goes over HTTP or the websocket."""
    await set_editor(page, QUERY_EDITOR, query)
    await page.wait_for_function(
        """([selector, kind]) => {
            const ast = document.querySelector(selector).CodeMirror.documentAST;
            return Boolean(ast) && ast.definitions.some((d) => d.operation === kind);
        }""",
        arg=[QUERY_EDITOR, kind],
        timeout=PAGE_WAIT_MS,
    )
    await page.click(".graphiql-execute-button")


async def test_graphiql_runs_a_query_and_a_subscription_with_no_internet(
    live: LiveServer, accounts: dict[str, Account]
) -> None:
    user = accounts["user"]
    job = await jobs.submit_job(user.actor, valid_submission(project_name="Offline"))
    problems: list[str] = []
    async with chromium(offline_except=live.http_url) as context:
        page = await context.new_page()  # type: ignore[attr-defined]
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: message.type == "error" and problems.append(message.text),
        )
        await page.goto(f"{live.http_url}/graphql")
        await page.wait_for_selector(QUERY_EDITOR, state="visible", timeout=PAGE_WAIT_MS)
        assert await page.is_visible(".graphiql-container")
        assert await page.is_visible(".graphiql-execute-button")

        await page.click(".graphiql-editor-tools button:has-text('Headers')")
        await set_editor(page, TOOL_EDITOR, json.dumps({"Authorization": f"Bearer {user.token}"}))
        await run(page, "{ me { email role } }", "query")
        answer = json.loads(await wait_for_result(page, user.email))
        assert answer == {"data": {"me": {"email": user.email, "role": "USER"}}}

        # Over the websocket, with the Headers tab's token in connection_init.
        subscription = f'subscription {{ jobUpdated(id: "{job.id}") {{ kind job {{ status }} }} }}'
        await run(page, subscription, "subscription")
        await wait_for_result(page, "SNAPSHOT", "QUEUED")
        await jobs.cancel(job.id, "stopped from the test", user.actor)
        event = json.loads(await wait_for_result(page, "CANCELLED"))
        assert event["data"]["jobUpdated"]["job"]["status"] == "CANCELLED"

        await page.screenshot(path=str(screenshot_path("graphiql")))
        assert context.blocked == []  # type: ignore[attr-defined]
        # The token stays in the tab: nothing GraphiQL keeps outlives it.
        kept = await page.evaluate("() => JSON.stringify(Object.entries(window.localStorage))")
        assert user.token not in kept and "graphiql:" not in kept
        in_tab = await page.evaluate("() => JSON.stringify(Object.entries(window.sessionStorage))")
        assert user.token in in_tab
    assert problems == []
