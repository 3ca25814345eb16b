"""`veuctl db current` on an SQLite path whose directory does not exist said "`veuctl db upgrade` creates it",
but `db upgrade` refuses such a path (a typo in it used to make the directories and a new, empty store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_db_current_says_the_directory_must_exist_first(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "veu.db"
    url = f"sqlite:///{path}"
    r = _cli(url, "db", "current", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)["status"]
    assert status == (f"no store at {path}: directory {path.parent} does not exist; create it first, or correct "
                      "the path; then `veuctl db upgrade` creates the store (nothing was created)"), status
    assert not path.parent.exists()
    # What it says is what happens: db upgrade refuses, and creates it once the directory is there.
    assert _cli(url, "db", "upgrade").returncode == 2
    path.parent.mkdir()
    assert _cli(url, "db", "upgrade").returncode == 0 and path.exists()


def test_db_current_says_so_when_the_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    path = tmp_path / "afile" / "veu.db"
    r = _cli(f"sqlite:///{path}", "db", "current")
    assert r.returncode == 0, r.stderr
    assert f"directory {path.parent} is not a directory" in " ".join(r.stdout.split()), r.stdout
    assert "`veuctl db upgrade` creates it" not in r.stdout
    assert (tmp_path / "afile").read_text() == "x"
