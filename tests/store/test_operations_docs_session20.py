"""docs/operations.md, followed literally on PostgreSQL: the backup and restore commands work with the database URL
the install step puts in the Secret (and that every pod and `veuctl` reads as VEU_DATABASE_URL)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
VEUCTL = str(Path(sys.executable).parent / "veuctl")

pytestmark = pytest.mark.postgres


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(title)
    return text[start:text.index("\n## ", start)]


def _install_url_scheme() -> str:
    """The scheme of the URL the install step writes into the `veu-governor-database` Secret."""
    found = re.search(r"--from-literal=url='([a-z+]+)://", _section("## Install"))
    assert found is not None
    return found.group(1)


def _postgres_backup_commands() -> list[str]:
    """The `pg_dump` and `pg_restore` command lines of "Backup and restore", continuation lines joined."""
    block = _section("## Backup and restore").split("**PostgreSQL**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [ln.split(" #", 1)[0].strip() for ln in lines if ln.startswith(("pg_dump", "pg_restore"))]


@pytest.mark.skipif(shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
                    reason="needs the PostgreSQL client tools")
def test_the_documented_backup_and_restore_work_with_the_url_the_install_step_stores(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scheme = _install_url_scheme()
    url = re.sub(r"^[a-z+]+://", f"{scheme}://", pg_url)
    monkeypatch.setenv("VEU_DATABASE_URL", url)
    env = {**os.environ, "VEU_DATABASE_URL": url, "HOME": str(tmp_path)}

    def veuctl(*args: str) -> int:
        return subprocess.run([VEUCTL, *args], env=env, capture_output=True, timeout=120).returncode

    assert veuctl("parties", "add", "Before Backup", "--hq", "DE") == 0
    dump, restore = _postgres_backup_commands()
    ran = subprocess.run(["bash", "-c", dump], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    (made,) = tmp_path.glob("veu-*.dump")
    named = re.search(r"(veu-[\d-]+\.dump)", restore)
    assert named is not None
    made.rename(tmp_path / named.group(1))

    assert veuctl("parties", "add", "After Backup", "--hq", "DE") == 0
    ran = subprocess.run(["bash", "-c", restore], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert veuctl("parties", "show", "Before Backup") == 0
    assert veuctl("parties", "show", "After Backup") == 2  # written after the backup: not in it
    assert veuctl("audit", "verify") == 0
