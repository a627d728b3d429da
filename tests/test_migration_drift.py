"""`rendertrack migrate --check` (run by `make test`) fails when models change without a
migration, and passes on the committed tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def migrate_check(pythonpath: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate", "--check"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_committed_models_match_the_migrations(tmp_path: Path) -> None:
    result = migrate_check(None, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr


def test_a_model_change_without_a_migration_is_caught(tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(ROOT / "models", changed / "models")
    job = changed / "models" / "job.py"
    source = job.read_text()
    anchor = "    sequence = fields.IntField(default=0)\n"
    assert anchor in source
    extra = "    render_node = fields.TextField(null=True)\n"
    job.write_text(source.replace(anchor, anchor + extra))

    result = migrate_check(changed, tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "no migration records" in result.stderr
    assert "Traceback" not in result.stderr
