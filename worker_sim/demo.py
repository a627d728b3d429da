"""`make demo` (`.venv/bin/python -m worker_sim.demo`): a server on a demo database, three
simulated workers, sample jobs, and live progress within a minute. Ctrl-C stops it all.

1. A fresh `data/demo.sqlite3` (the previous demo's is removed; never a file a server holds).
2. A USER (who submits) and three WORKERs, through `rendertrack users create`.
3. `rendertrack serve` on 127.0.0.1:$RENDERTRACK_PORT (default 8000), its log in
   `data/demo-server.log`.
4. Six sample jobs over GraphQL, then three more every 30 s so the workers stay busy.
5. Three `rendertrack simulate-worker`s (renders of 13..29 s, one in ten fails), their log in
   `data/demo-workers.log`.
6. Where to look (GraphiQL, the token, a subscription to paste), then a status line every 5 s.

Every child runs in a session of its own and dies with this process (Linux), so a Ctrl-C reaches
this process only and it stops them in order: workers first (each hands its job back), then the
server. Any other RENDERTRACK_ setting of the caller's environment is left out, except the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
DATABASE = DATA / "demo.sqlite3"
SERVER_LOG = DATA / "demo-server.log"
WORKERS_LOG = DATA / "demo-workers.log"
HOST = "127.0.0.1"
USER_EMAIL = "you@demo.local"
# (name, seconds a render takes give or take 20%)
WORKERS = (("render01", 16.0), ("render02", 20.0), ("render03", 24.0))
FAIL_RATE = "0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
STATUS_EVERY = 5.0
REFILL_EVERY = 30.0
REFILL_SIZE = 3

# (project, output file, priority, composition or None): paths follow the README's rules.
SAMPLES = (
    ("Promo 2026", "promo_2026.mp4", 7, None),
    ("Weather Intro", "weather_intro.mov", 5, None),
    ("Sports Lower Third", "sports_lower_third.mov", 5, "lower_third"),
    ("Product Launch", "product_launch.mp4", 9, None),
    ("Holiday Card", "holiday_card.gif", 3, None),
    ("News Opener", "news_opener.mp4", 6, "opener"),
)
SUBMIT = """
mutation Submit($input: SubmitJobInput!) { submitJob(input: $input) { id status errorMessage } }
"""
STATUS = """
{ jobStats { queued rendering completed failed }
  jobs(first: 10, filter: {status: [RENDERING]}) {
    edges { node { projectName progress worker { name } } } } }
"""
SUBSCRIPTION = "subscription { jobEvents { kind job { id projectName status progress } } }"
QUERY = "{ jobs(first: 20) { edges { node { projectName status progress logs(tail: 3) } } } }"
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


class DemoError(Exception):
    """Why the demo cannot start: one line for the person who ran it."""


def main() -> int:
    try:
        port = int(os.environ.get("RENDERTRACK_PORT", "8000"))
    except ValueError:
        print("demo: RENDERTRACK_PORT must be a port number", file=sys.stderr)
        return 2
    demo = Demo(port)
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, demo.ask_to_stop)
    try:
        demo.start()
        demo.watch()
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
    return 0


class Demo:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.env = _environment(port)
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.logs: list[IO[bytes]] = []
        self.user_token = ""
        self.stopping = False
        self.samples = itertools.count()

    def ask_to_stop(self, number: int, frame: object) -> None:
        if not self.stopping:
            print(f"\ndemo: {signal.Signals(number).name}: stopping...", file=sys.stderr)
        self.stopping = True

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        _check_port_free(self.port)
        _remove_previous_database()
        say(f"creating {DATABASE.relative_to(REPO)} with a user and {len(WORKERS)} workers")
        self.user_token = self._create_user(USER_EMAIL, "You", "user")
        tokens = {
            name: self._create_user(f"{name}@demo.local", name, "worker") for name, _ in WORKERS
        }
        self._check_stop()
        server_log = self._log(SERVER_LOG)
        self.server = _spawn(
            [_rendertrack(), "serve", "--host", HOST, "--port", str(self.port)],
            self.env,
            server_log,
        )
        self._wait_until_healthy()
        with httpx.Client(base_url=self.url, timeout=10) as http:
            for _ in range(len(SAMPLES)):
                self._submit(http)
        say(f"submitted {len(SAMPLES)} sample jobs")
        workers_log = self._log(WORKERS_LOG)
        for name, seconds in WORKERS:
            self.workers.append(
                _spawn(
                    [
                        _rendertrack(),
                        "simulate-worker",
                        "--url",
                        self.url,
                        "--name",
                        name,
                        "--duration",
                        f"{seconds:g}",
                        "--fail-rate",
                        FAIL_RATE,
                        "--heartbeat",
                        "3",  # a heavy frame (3..5 steps long) shows one
                    ],
                    {**self.env, "RENDERTRACK_WORKER_TOKEN": tokens[name]},
                    workers_log,
                )
            )
        self._banner()

    def _create_user(self, email: str, name: str, role: str) -> str:
        done = subprocess.run(
            [_rendertrack(), "users", "create", "--email", email, "--name", name, "--role", role],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        token = done.stdout.strip()
        self._check_stop()
        if done.returncode != 0 or not token:
            raise DemoError(f"rendertrack users create {email} failed: {done.stderr.strip()}")
        return token

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_stop()
            assert self.server is not None
            if self.server.poll() is not None:
                raise DemoError(f"the server exited ({self.server.returncode}):\n{_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise DemoError(f"the server did not answer within {START_TIMEOUT:g}s:\n{_tail()}")

    def _submit(self, http: httpx.Client) -> None:
        number = next(self.samples)
        project, output, priority, scene = SAMPLES[number % len(SAMPLES)]
        round_ = number // len(SAMPLES)
        if round_:
            project = f"{project} #{round_ + 1}"
        stem = output.rsplit(".", 1)[0]
        job: dict[str, Any] = {
            "projectName": project,
            "outputName": output,
            "templatePath": f"C:\\jobs\\{stem}\\{stem}.aep",
            "dataPath": f"C:\\jobs\\{stem}\\{stem}.json",
            "outputPath": f"C:\\renders\\{output}",
            "priority": priority,
        }
        if scene is not None:  # a Nexrender job naming its composition
            job["nexrenderConfig"] = {
                "template": {"src": f"file:///C:/jobs/{stem}/{stem}.aep", "composition": scene},
                "assets": [],
                "actions": {"postrender": []},
            }
        body = _graphql(http, self.user_token, SUBMIT, {"input": job})["submitJob"]
        if body["status"] != "QUEUED":
            raise DemoError(f"sample job {project!r} was refused: {body['errorMessage']}")

    def _banner(self) -> None:
        headers = '{"Authorization": "Bearer ' + self.user_token + '"}'
        print(
            f"""
  rendertrack demo: 1 server, {len(WORKERS)} simulated workers, sample jobs.

  GraphiQL:     {self.url}/graphql
  Headers tab:  {headers}
  Paste this and press play, then watch the jobs move:
                {SUBSCRIPTION}
  Or:           {QUERY}

  Logs:         data/demo-workers.log (tail -f it), data/demo-server.log
  Ctrl-C stops the workers (each hands its job back), then the server.
""",
            flush=True,
        )

    # -- run -----------------------------------------------------------------------------

    def watch(self) -> None:
        next_status = time.monotonic() + 2.0
        next_refill = time.monotonic() + REFILL_EVERY
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stopping:
                time.sleep(0.2)
                assert self.server is not None
                if self.server.poll() is not None:
                    raise DemoError(f"the server exited ({self.server.returncode}):\n{_tail()}")
                now = time.monotonic()
                try:
                    if now >= next_refill:
                        next_refill = now + REFILL_EVERY
                        for _ in range(REFILL_SIZE):
                            self._submit(http)
                    if now >= next_status:
                        next_status = now + STATUS_EVERY
                        say(self._status(http))
                except (httpx.HTTPError, DemoError, KeyError, TypeError, ValueError) as error:
                    say(f"(no status this time: {type(error).__name__}: {error})")

    def _status(self, http: httpx.Client) -> str:
        data = _graphql(http, self.user_token, STATUS, {})
        stats = data["jobStats"]
        rendering = [
            f"{node['projectName']} {node['progress']}%"
            + (f" ({node['worker']['name']})" if node.get("worker") else "")
            for node in (edge["node"] for edge in data["jobs"]["edges"])
        ]
        alive = sum(worker.poll() is None for worker in self.workers)
        return (
            f"queued {stats['queued']} | rendering: {', '.join(rendering) or 'none'} | "
            f"completed {stats['completed']} | failed {stats['failed']} | "
            f"{alive}/{len(self.workers)} workers up"
        )

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Workers first (SIGTERM: they hand their jobs back while the server still runs),
        then the server (SIGINT: uvicorn's graceful stop). Whatever lingers is killed."""
        self.stopping = True
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        _stop_all(self.workers, signal.SIGTERM)
        if self.server is not None:
            _stop_all([self.server], signal.SIGINT)
        for log in self.logs:
            log.close()
        if self.server is not None:
            say(
                f"stopped the server and {len(self.workers)} workers; the jobs stay in "
                f"{DATABASE.relative_to(REPO)} until the next `make demo`"
            )

    def _check_stop(self) -> None:
        if self.stopping:
            raise DemoError("stopped before it was up")

    def _log(self, path: Path) -> IO[bytes]:
        log = path.open("wb")  # a fresh database, fresh logs
        self.logs.append(log)
        return log


def _environment(port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RENDERTRACK_")}
    env.update(
        RENDERTRACK_DATABASE_URL=f"sqlite://{DATABASE}",
        RENDERTRACK_PORT=str(port),
        RENDERTRACK_RETRY_BACKOFF="5",  # a retried job is seen again soon
        RENDERTRACK_STALL_TIMEOUT="60",
        PYTHONUNBUFFERED="1",
    )
    return env


def _rendertrack() -> str:
    script = Path(sys.executable).parent / "rendertrack"
    if not script.exists():
        raise DemoError(f"{script} is missing: run `make demo` (it installs the project)")
    return str(script)


def _spawn(command: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches the demo only, which stops them in order
        preexec_fn=_die_with_parent if _LIBC is not None else None,
    )


def _die_with_parent() -> None:
    """In the child: SIGTERM when the demo dies, however it dies (Linux's PR_SET_PDEATHSIG)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_all(processes: list[subprocess.Popen], number: int) -> None:
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(number)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: it and its children
            process.wait()


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            raise DemoError(
                f"port {port} is in use: pick another one, e.g. `RENDERTRACK_PORT={port + 10} "
                "make demo`"
            ) from None


def _remove_previous_database() -> None:
    """The previous demo's database goes, unless a server still holds it."""
    DATA.mkdir(exist_ok=True)
    with _server_lock_free(DATABASE):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DATABASE}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def _server_lock_free(database: Path) -> Iterator[None]:
    """Holds the file's server lock (the one `rendertrack serve` takes) while the body runs."""
    with Path(f"{database}.server-lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoError(
                f"a server is running on {database.relative_to(REPO)} (another demo?): stop it "
                "first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _graphql(http: httpx.Client, token: str, query: str, variables: dict[str, Any]) -> Any:
    response = http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    if body.get("errors"):
        raise DemoError(f"the server refused a demo request: {body['errors'][0].get('message')}")
    return body["data"]


def _tail() -> str:
    try:
        return SERVER_LOG.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no server log)"


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
