"""Any command whose store cannot be used says where the URL came from (--db or VEU_DATABASE_URL), in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def _veuctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_store_names_the_setting_the_url_came_from() -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/none?connect_timeout=2"
    r = _veuctl("parties", "list", env={"VEU_DATABASE_URL": url})
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: database unavailable (--db / VEU_DATABASE_URL): "), r.stderr
    assert "Traceback" not in r.stderr


def test_a_file_that_is_not_a_database_names_the_setting_not_only_the_option(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are notes, not an SQLite database\n" * 200)
    r = _veuctl("parties", "list", env={"VEU_DATABASE_URL": f"sqlite:///{junk}"})
    assert r.returncode == 2, r.stderr
    assert "(--db / VEU_DATABASE_URL): not a usable database" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert junk.read_text().startswith("these are notes")  # never touched
