"""npm packages that tests and benchmarks run, installed once per package.json into
.cache/<name> (git-ignored).

`install` is for any caller: it raises NpmUnavailable (no node or npm on PATH) or NpmFailed (the
install failed or took too long). `installed` is the tests' form: a missing node or npm skips
the test, except under CI=true, where it fails, and so does a failed install (pytest is imported
only there, so the benchmarks never need it)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NPM_INSTALL_TIMEOUT = 300


class NpmUnavailable(RuntimeError):
    """node or npm is not on PATH."""


class NpmFailed(RuntimeError):
    """npm install failed or took longer than NPM_INSTALL_TIMEOUT."""


def install(package_json: Path, name: str, *npm_options: str) -> tuple[str, Path]:
    """(node's path, the folder whose node_modules hold `package_json`'s packages), installing
    them first when the cache holds another package.json. One installer at a time: the SQLite
    and PostgreSQL runs may start together."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, path in (("node", node), ("npm", npm)) if not path)
        raise NpmUnavailable(f"{missing} not found on PATH")
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
                raise NpmFailed(f"npm install took longer than {NPM_INSTALL_TIMEOUT}s") from None
            if result.returncode != 0:
                tail = result.stderr[-3000:]
                raise NpmFailed(f"npm install failed ({result.returncode}):\n{tail}")
            stamp.write_text(wanted)
    return node, cache


def installed(package_json: Path, name: str, what: str, *npm_options: str) -> tuple[str, Path]:
    """`install` for a test: without node or npm the test is skipped (failed under CI=true);
    a failed install fails it."""
    import pytest

    try:
        return install(package_json, name, *npm_options)
    except NpmUnavailable as missing:
        reason = f"{missing}: {what} needs Node.js 20+"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI=true needs {what}: {reason}")
        pytest.skip(reason)
    except NpmFailed as failed:
        pytest.fail(str(failed))
