"""The live dashboard at `/` in a real headless Chromium, against a real `rendertrack serve`
subprocess on a SQLite file of its own, with a real simulated worker rendering.

What a person at the screen sees: a job's progress bar moving and its status going to
RENDERING then COMPLETED without a reload, its detail (history, log) following along, the
workers panel (a silent worker marked stalled); a USER seeing only their own jobs and no admin
parts, filtering them, and cancelling a queued one with a reason; a refused change's message; a
wrong token refused and a revoked one signing the page out; and the page coming back by itself
after the server restarts, showing what changed while it was away. Every test checks that no
request left the server's origin and that the page threw nothing. One test drives the page's
own modules (resume, de-duplication, merge, backoff) with stand-ins for the server.

The tests share one server and run in file order; the restart comes last.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Locator, Page, WebSocketRoute, expect

from tests.browser import chromium, screenshot_path
from tests.databases import only_in_pass
from tests.server_process import ServerProcess, free_port, start_rendertrack
from tests.test_cli import rendertrack
from tests.test_simulated_worker import simulator

pytestmark = [
    pytest.mark.slow,
    only_in_pass(
        "sqlite",
        "the page is a client of the API and runs the same on both databases (the API's "
        "PostgreSQL paths are covered by the API tests)",
    ),
]

WAIT_MS = 15_000
# A worker silent for 2 s shows as stalled; the sweeper, which would take its job back, runs
# once at start and then not for an hour.
SERVER_SETTINGS = {"RENDERTRACK_STALL_TIMEOUT": "2", "RENDERTRACK_SWEEP_INTERVAL": "3600"}
USER_EMAIL = "viewer@studio.internal"
WORKER_EMAIL = "render01@farm.local"

SUBMIT = "mutation($input: SubmitJobInput!) { submitJob(input: $input) { id status } }"
CANCEL = "mutation($id: ID!, $reason: String!) { cancelJob(id: $id, reason: $reason) { id } }"
CLAIM = "mutation { claimJob { id } }"
PRIORITY = "mutation($id: ID!, $p: Int!) { setJobPriority(id: $id, priority: $p) { id } }"
JOB = "query($id: ID!) { job(id: $id) { status priority cancelledReason } }"
STATS = "{ jobStats { completed cancelled } }"
ROTATE = "mutation($id: ID!) { rotateToken(userId: $id) { token } }"

# The page's own view of a row's progress bar, sampled on every animation frame: the distinct
# widths it has shown.
WIDTHS_SEEN = """([id, wanted]) => {
  const fill = document.querySelector(`tr[data-job-id="${id}"] .progress-fill`);
  if (!fill) return false;
  const seen = (window.widthsSeen ||= {});
  (seen[id] ||= new Set()).add(fill.style.width);
  const partial = [...seen[id]].filter((width) => width !== "0%" && width !== "100%");
  return partial.length >= wanted ? [...seen[id]] : false;
}"""


# The page's own modules, driven in the page with stand-ins for the server: the stream's resume
# and de-duplication rules, the merge of reads and changes, the reconnect delays.
MODULE_RULES = """async () => {
  const { LiveFeed } = await import("/static/dashboard/live-feed.js");
  const { JobsModel } = await import("/static/dashboard/jobs-model.js");
  const { reconnectDelay } = await import("/static/dashboard/backoff.js");

  const subscriptions = [];
  const connection = { subscribe(s) { subscriptions.push(s); return { unsubscribe() {} }; } };
  const handled = [];
  let reads = 0;
  const feed = new LiveFeed({
    connection,
    onEvent: (event) => handled.push(`${event.job.id}:${event.sequence}`),
    onResync: () => { reads += 1; },
  });
  feed.start();
  const stream = subscriptions[0];
  const fresh = stream.variables();
  const event = (id, sequence, cursor) => ({ jobEvents: { job: { id }, sequence, cursor } });
  for (const [id, sequence, cursor] of [["a", 1, "c1"], ["a", 2, "c2"], ["a", 2, "c2"],
                                         ["b", 1, "c3"], ["a", 1, "c1"]]) {
    stream.next(event(id, sequence, cursor));
  }
  const resumed = stream.variables();
  feed.connected({ reconnected: true });
  const readsAfterReconnect = reads;
  stream.error([{ message: "too old",
                  extensions: { code: "BAD_USER_INPUT", fields: [{ field: "after" }] } }]);
  const again = subscriptions[1].variables();

  const model = new JobsModel();
  const job = (status, updatedAt, sequence) => ({ id: "j", status, updatedAt, sequence,
    projectName: "P", outputName: "p.mp4", createdAt: "2026-01-01T00:00:00+00:00" });
  const sentAt = performance.now();
  model.applyChange(job("RENDERING", "2026-01-01T00:00:02.000002+00:00", 4));
  model.applyList([job("QUEUED", "2026-01-01T00:00:02.000001+00:00", 3)], 1, sentAt);
  const afterOlderRead = model.get("j").status;
  model.applyChange(job("QUEUED", "2026-01-01T00:00:01+00:00", 2));
  const afterOlderChange = model.get("j").status;
  model.applyList([job("COMPLETED", "2026-01-01T00:00:03+00:00", 5)], 1, performance.now());
  const afterNewerRead = model.get("j").status;
  // Two server processes' clocks may disagree: the sequence decides, not the time.
  model.applyChange(job("FAILED", "2026-01-01T00:00:02+00:00", 6));
  const afterNewerSequence = model.get("j").status;

  const delays = (random) => [0, 1, 2, 3, 4, 5, 10, 50].map((n) => reconnectDelay(n, random));
  return { fresh, handled, resumed, readsAfterReconnect, reads, again, afterOlderRead,
           afterOlderChange, afterNewerRead, afterNewerSequence,
           low: delays(() => 0), high: delays(() => 1) };
}"""


@dataclass
class Farm:
    """A rendertrack server on a fixed port and SQLite file (so that it can be restarted as
    the same server), with an ADMIN, a USER and a WORKER."""

    folder: Path
    port: int
    server: ServerProcess | None = None
    admin: str = ""
    user: str = ""
    worker: str = ""

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.folder / 'db' / 'rendertrack.sqlite3'}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ServerProcess:
        """`rendertrack serve` on this farm's port and database."""
        self.server = await start_rendertrack(
            self.database_url, self.folder, cwd=self.folder, port=self.port, env=SERVER_SETTINGS
        )
        return self.server

    async def stop(self) -> None:
        if self.server is None:
            return
        server, self.server = self.server, None
        await server.close()

    async def graphql(self, token: str, query: str, **variables: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.origin, timeout=10) as http:
            response = await http.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]

    async def submit(self, token: str, project: str, priority: int = 5) -> str:
        job = {
            "projectName": project,
            "outputName": f"{project.lower().replace(' ', '-')}.mp4",
            "templatePath": "/mnt/jobs/promo.aep",
            "dataPath": "/mnt/jobs/promo.json",
            "outputPath": "/mnt/renders/promo.mp4",
            "priority": priority,
        }
        data = await self.graphql(token, SUBMIT, input=job)
        assert data["submitJob"]["status"] == "QUEUED", data
        return data["submitJob"]["id"]


async def create_user(farm: Farm, email: str, role: str) -> str:
    result = await asyncio.to_thread(
        rendertrack,
        "users",
        "create",
        "--email",
        email,
        "--role",
        role,
        database_url=farm.database_url,
        cwd=farm.folder,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest_asyncio.fixture(scope="module")
async def farm(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Farm]:
    farm = Farm(tmp_path_factory.mktemp("dashboard"), free_port())
    try:
        server = await farm.start()
        farm.admin = await server.read_token()
        await server.until_healthy()
        farm.user = await create_user(farm, USER_EMAIL, "user")
        farm.worker = await create_user(farm, WORKER_EMAIL, "worker")
        yield farm
    finally:
        await farm.stop()


@pytest_asyncio.fixture(scope="module")
async def browser(farm: Farm) -> AsyncIterator[BrowserContext]:
    async with chromium(offline_except=farm.origin) as context:
        yield context  # type: ignore[misc]


@dataclass
class Screen:
    """A tab on the dashboard, with what it threw."""

    page: Page
    origin: str
    errors: list[str] = field(default_factory=list)

    def row(self, job_id: str) -> Locator:
        return self.page.locator(f'tr[data-job-id="{job_id}"]')

    async def sign_in(self, token: str) -> None:
        await self.page.goto(f"{self.origin}/")
        await self.page.get_by_label("API token").fill(token)
        await self.page.get_by_label("API token").press("Enter")
        await expect(self.page.locator("#dashboard")).to_be_visible(timeout=WAIT_MS)
        # Gone after a reload: proves the page was never reloaded.
        await self.page.evaluate("() => { window.sameDocument = true; }")

    async def still_the_same_document(self) -> bool:
        return await self.page.evaluate("() => window.sameDocument === true")

    async def session_token(self) -> str | None:
        return await self.page.evaluate("() => sessionStorage.getItem('rendertrack.token')")


@pytest_asyncio.fixture
async def screen(browser: BrowserContext, farm: Farm) -> AsyncIterator[Screen]:
    page = await browser.new_page()
    watched = Screen(page, farm.origin)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    try:
        yield watched
    finally:
        await page.close()
    assert watched.errors == [], "the page threw"
    assert browser.blocked == [], "the page asked another origin"  # type: ignore[attr-defined]


async def test_an_admin_watches_a_job_render_live(farm: Farm, screen: Screen) -> None:
    page = screen.page
    await screen.sign_in(farm.admin)
    await expect(page.locator("#account")).to_contain_text("ADMIN")
    job_id = await farm.submit(farm.user, "Live Spot", priority=10)  # first in the queue
    row = screen.row(job_id)
    await expect(row.locator(".status")).to_have_text("QUEUED", timeout=WAIT_MS)
    await expect(page.locator("#jobs-head")).to_contain_text("Owner")
    await expect(row.locator(".row-owner")).to_have_text(USER_EMAIL)
    await expect(row.locator(".queue-position")).to_have_text("#1")

    args = ("--duration", "5", "--jobs", "1", "--seed", "4", "--name", "wall-test")
    async with simulator(farm.origin, farm.worker, *args) as worker:
        await expect(row.locator(".status")).to_have_text("RENDERING", timeout=WAIT_MS)
        await expect(row.locator(".row-worker")).to_have_text(WORKER_EMAIL)
        await row.locator(".job-name").click()
        detail = page.locator("#job-detail")
        await expect(detail.locator("#detail-title")).to_contain_text("Live Spot")
        widths = await page.wait_for_function(
            WIDTHS_SEEN, arg=[job_id, 2], polling="raf", timeout=WAIT_MS
        )
        assert len(await widths.json_value()) >= 2
        held = page.locator(f'#workers-list li[data-worker-email="{WORKER_EMAIL}"]')
        await expect(held).to_contain_text("Live Spot", timeout=WAIT_MS)
        await expect(held.locator(".heartbeat")).to_contain_text(re.compile(r"ago|just now"))
        await expect(row.locator(".stage")).not_to_be_empty()
        await page.screenshot(path=screenshot_path("dashboard-admin"), full_page=True)

        await expect(row.locator(".status")).to_have_text("COMPLETED", timeout=WAIT_MS)
        assert await worker.exit_code() == 0, worker.log

    await expect(row.locator(".progress-text")).to_have_text("100%")
    await expect(row.locator(".progress-fill")).to_have_attribute("style", "width: 100%;")
    # The detail followed along: the end of the render is in its history and its log tail.
    await expect(detail.locator("#detail-history")).to_contain_text("RENDERING → COMPLETED")
    await expect(detail.locator("#detail-log")).to_contain_text('Finished composition "main"')
    stats = (await farm.graphql(farm.admin, STATS))["jobStats"]
    completed = page.locator('#stats [data-status="COMPLETED"] .count')
    await expect(completed).to_have_text(str(stats["completed"]), timeout=WAIT_MS)
    await expect(held).to_have_attribute("data-state", "idle", timeout=WAIT_MS)
    await page.screenshot(path=screenshot_path("dashboard-detail"), full_page=True)
    assert await screen.still_the_same_document()


async def test_a_silent_worker_is_marked_stalled(farm: Farm, screen: Screen) -> None:
    job_id = await farm.submit(farm.admin, "Silent Render", priority=10)  # first in the queue
    await screen.sign_in(farm.admin)
    claimed = (await farm.graphql(farm.worker, CLAIM))["claimJob"]
    assert claimed == {"id": job_id}
    worker = screen.page.locator(f'#workers-list li[data-worker-email="{WORKER_EMAIL}"]')
    # The panel reads the workers every five seconds: on a loaded machine the first read that
    # shows the claim may come after the two seconds of silence, so it may already say stalled.
    await expect(worker).to_have_attribute(
        "data-state", re.compile("^(rendering|stalled)$"), timeout=WAIT_MS
    )
    await expect(worker).to_contain_text("Silent Render")
    # Two seconds without a report; the panel reads the workers again every five.
    await expect(worker).to_have_attribute("data-state", "stalled", timeout=WAIT_MS)
    await expect(worker.locator(".worker-state")).to_have_text("stalled")
    await screen.page.screenshot(path=screenshot_path("dashboard-stalled-worker"))
    await farm.graphql(farm.admin, CANCEL, id=job_id, reason="the node is gone")
    await expect(worker).to_have_attribute("data-state", "idle", timeout=WAIT_MS)


async def test_a_user_sees_only_their_jobs_and_cancels_a_queued_one(
    farm: Farm, screen: Screen
) -> None:
    page = screen.page
    theirs = await farm.submit(farm.user, "Viewer Teaser", priority=3)
    other = await farm.submit(farm.user, "Viewer Recap", priority=3)
    not_theirs = await farm.submit(farm.admin, "Admin Only", priority=3)
    await screen.sign_in(farm.user)
    row = screen.row(theirs)
    await expect(row.locator(".status")).to_have_text("QUEUED", timeout=WAIT_MS)
    await expect(screen.row(other)).to_be_visible()
    await expect(screen.row(not_theirs)).to_have_count(0)
    await expect(page.locator("#jobs-head")).not_to_contain_text("Owner")
    await expect(page.locator("#workers-panel")).to_be_hidden()

    await page.get_by_label("Search").fill("recap")
    await expect(row).to_have_count(0, timeout=WAIT_MS)
    await expect(screen.row(other)).to_be_visible()
    await page.get_by_label("Search").fill("")
    await expect(row).to_be_visible(timeout=WAIT_MS)

    # Priority: the + button, then a value the API refuses, whose message is shown.
    await row.get_by_role("button", name="Raise priority").click()
    await expect(row.locator(".priority-input")).to_have_value("4", timeout=WAIT_MS)
    await row.get_by_label("Priority", exact=True).fill("0")
    await row.get_by_label("Priority", exact=True).press("Tab")
    await expect(page.locator("#notices")).to_contain_text("priority", timeout=WAIT_MS)
    await expect(page.locator("#notices")).to_contain_text("Invalid input")
    await expect(row.locator(".priority-input")).to_have_value("4")

    await row.get_by_role("button", name="Cancel").click()
    dialog = page.locator("#cancel-dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Reason").fill("client pulled the spot")
    await dialog.get_by_role("button", name="Cancel the job").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator(".status")).to_have_text("CANCELLED", timeout=WAIT_MS)
    await expect(row.get_by_role("button", name="Retry")).to_be_visible()
    await expect(row.get_by_role("button", name="Cancel")).to_be_hidden()
    job = (await farm.graphql(farm.user, JOB, id=theirs))["job"]
    assert (job["status"], job["cancelledReason"]) == ("CANCELLED", "client pulled the spot")
    await page.screenshot(path=screenshot_path("dashboard-user"), full_page=True)
    await expect(screen.row(not_theirs)).to_have_count(0)

    await page.get_by_label("Cancelled", exact=True).uncheck()  # the status filter
    await expect(row).to_have_count(0, timeout=WAIT_MS)
    await expect(screen.row(other)).to_be_visible()
    assert await screen.still_the_same_document()


async def test_a_wrong_token_is_refused_and_sign_out_forgets_the_token(
    farm: Farm, screen: Screen
) -> None:
    page = screen.page
    await page.goto(f"{farm.origin}/")
    token_field = page.get_by_label("API token")
    await token_field.fill("rt_not-a-real-token")
    await token_field.press("Enter")
    await expect(page.locator("#sign-in-error")).to_contain_text("not accepted", timeout=WAIT_MS)
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await screen.session_token() is None
    await page.screenshot(path=screenshot_path("dashboard-wrong-token"))

    await token_field.fill(farm.user)
    await token_field.press("Enter")
    await expect(page.locator("#dashboard")).to_be_visible(timeout=WAIT_MS)
    assert await screen.session_token() == farm.user
    assert farm.user not in page.url
    await page.reload()  # the tab keeps its session
    await expect(page.locator("#dashboard")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#account")).to_contain_text("USER")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#sign-in")).to_be_visible()
    assert await screen.session_token() is None
    await page.reload()
    await expect(page.locator("#sign-in")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#dashboard")).to_be_hidden()


async def test_a_revoked_token_signs_the_page_out_saying_why(farm: Farm, screen: Screen) -> None:
    page = screen.page
    await screen.sign_in(farm.user)
    user_id = (await farm.graphql(farm.user, "{ me { id } }"))["me"]["id"]
    rotated = await farm.graphql(farm.admin, ROTATE, id=user_id)
    farm.user = rotated["rotateToken"]["token"]
    await expect(page.locator("#sign-in")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#sign-in-error")).to_contain_text("revoked")
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await screen.session_token() is None


async def test_the_pages_rules_for_resuming_merging_and_backing_off(
    farm: Farm, screen: Screen
) -> None:
    await screen.page.goto(f"{farm.origin}/")
    rules = await screen.page.evaluate(MODULE_RULES)
    assert rules["fresh"] == {}  # nothing to resume from yet
    assert rules["handled"] == ["a:1", "a:2", "b:1"]  # each (job, sequence) once
    assert rules["resumed"] == {"after": "c3"}  # the last event handled
    assert rules["readsAfterReconnect"] == 0  # a cursor: the stream fills the gap
    assert rules["reads"] == 1 and rules["again"] == {}  # cursor refused: read, then afresh
    assert rules["afterOlderRead"] == "RENDERING"  # a read older than a change loses
    assert rules["afterOlderChange"] == "RENDERING"
    assert rules["afterNewerRead"] == "COMPLETED"
    assert rules["afterNewerSequence"] == "FAILED"
    assert rules["low"] == [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]  # jitter: half...
    assert rules["high"] == [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]  # ...to all


@dataclass
class SocketGate:
    """Routes the page's websockets to the server and records what they carry; while `held`,
    new websockets are closed at once, so the page stays away as long as the test wants."""

    held: bool = False
    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)

    async def route(self, socket: WebSocketRoute) -> None:
        if self.held:
            await socket.close(code=1013, reason="held by the test")
            return
        server = socket.connect_to_server()

        def to_server(message: str | bytes) -> None:
            self.sent.append(str(message))
            server.send(message)

        def to_page(message: str | bytes) -> None:
            self.received.append(str(message))
            socket.send(message)

        socket.on_message(to_server)
        server.on_message(to_page)


async def change_until_streamed(farm: Farm, gate: SocketGate, job_id: str) -> None:
    """Changes the job's priority until the page's stream delivers the change: the server
    starts a subscription a moment after the page sends it, and says nothing when it has."""
    for priority in range(3, 9):
        await farm.graphql(farm.admin, PRIORITY, id=job_id, p=priority)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if any(job_id in m and "PRIORITY_CHANGED" in m for m in gate.received):
                return
            await asyncio.sleep(0.05)
    pytest.fail(f"the page's stream delivered nothing: {gate.received}")


async def test_the_page_recovers_after_the_server_restarts(farm: Farm, screen: Screen) -> None:
    page = screen.page
    gate = SocketGate()
    await page.route_web_socket(re.compile(r"/graphql$"), gate.route)
    await screen.sign_in(farm.admin)
    away = await farm.submit(farm.admin, "Changed While Away", priority=2)
    after = await farm.submit(farm.admin, "Changed After", priority=2)
    for job_id in (away, after):
        await expect(screen.row(job_id).locator(".status")).to_have_text("QUEUED", timeout=WAIT_MS)
    await change_until_streamed(farm, gate, after)  # the page holds a cursor to resume from

    started = time.monotonic()
    await farm.stop()
    gate.held = True
    banner = page.locator("#connection-banner")
    await expect(banner).to_be_visible(timeout=WAIT_MS)
    await expect(banner).to_contain_text("reconnecting")
    await page.screenshot(path=screenshot_path("dashboard-reconnecting"))

    restarted = await farm.start()
    await restarted.until_healthy()
    await farm.graphql(farm.admin, CANCEL, id=away, reason="cancelled during the outage")
    await expect(banner).to_be_visible()  # still away: the change is not on screen yet
    await expect(screen.row(away).locator(".status")).to_have_text("QUEUED")
    sent_before = len(gate.sent)

    gate.held = False
    await expect(banner).to_be_hidden(timeout=WAIT_MS)
    await expect(screen.row(away).locator(".status")).to_have_text("CANCELLED", timeout=WAIT_MS)
    await farm.graphql(farm.admin, PRIORITY, id=after, p=9)
    await expect(screen.row(after).locator(".priority-input")).to_have_value("9", timeout=WAIT_MS)
    stats = (await farm.graphql(farm.admin, STATS))["jobStats"]
    cancelled = page.locator('#stats [data-status="CANCELLED"] .count')
    await expect(cancelled).to_have_text(str(stats["cancelled"]), timeout=WAIT_MS)
    await page.screenshot(path=screenshot_path("dashboard-recovered"), full_page=True)

    # It resumed the stream from its cursor, and the change made while it was away came back
    # through that stream (not only from a fresh read of the table).
    resumed = [m for m in gate.sent[sent_before:] if '"subscribe"' in m and "jobEvents" in m]
    assert resumed and '"after":"' in resumed[0], gate.sent[sent_before:]
    assert any(away in m and "CANCELLED" in m for m in gate.received), "no replayed event"
    assert await screen.still_the_same_document()
    assert time.monotonic() - started < 40
