"""npm packages the tests run against, installed once per package.json into .cache/<name>
(git-ignored). Without node or npm the test is skipped, except under CI=true, where it fails."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.databases import running_in_ci

REPO = Path(__file__).resolve().parent.parent
NPM_INSTALL_TIMEOUT = 300


def unavailable(what: str, reason: str) -> None:
    if running_in_ci():
        pytest.fail(f"CI=true needs {what}: {reason}")
    pytest.skip(reason)


def installed(package_json: Path, name: str, what: str, *npm_options: str) -> tuple[str, Path]:
    """(node's path, the folder whose node_modules hold `package_json`'s packages), installing
    them first when the cache holds another package.json. One installer at a time: the SQLite
    and PostgreSQL runs may start together."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, path in (("node", node), ("npm", npm)) if not path)
        unavailable(what, f"{missing} not found on PATH: {what} needs Node.js 20+")
    assert node is not None and npm is not None
    cache = REPO / ".cache" / name
    stamp = cache / ".installed-package.json"
    wanted = package_json.read_text()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache.parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = stamp.read_text() if stamp.exists() else None
        if current != wanted or not (cache / "node_modules").is_dir():
            stamp.unlink(missing_ok=True)
            (cache / "package.json").write_text(wanted)
            command = [npm, "install", "--no-audit", "--no-fund", *npm_options]
            try:
                result = subprocess.run(
                    [*command, "--prefix", str(cache)],
                    cwd=cache,
                    capture_output=True,
                    text=True,
                    timeout=NPM_INSTALL_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"npm install took longer than {NPM_INSTALL_TIMEOUT}s")
            if result.returncode != 0:
                pytest.fail(f"npm install failed ({result.returncode}):\n{result.stderr[-3000:]}")
            stamp.write_text(wanted)
    return node, cache
