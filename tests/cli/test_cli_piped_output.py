"""Tables written to a pipe or a file keep every name whole: no 80-column folding or "…", no padding."""

from __future__ import annotations

import os
import subprocess
import sys

VEUCTL = [sys.executable, "-m", "agent"]
LONG = "Long-Named Subsidiary Holdings of a Customer Group Pte Ltd"


def run(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([*VEUCTL, *args], capture_output=True, text=True, env={**env, "VEU_DATABASE_URL": db},
                          timeout=120)


def test_a_listing_piped_to_another_program_prints_long_names_whole_on_one_line(db_url: str) -> None:
    assert run("parties", "add", LONG, "--hq", "SG", "--namespace", "long-ns", db=db_url).returncode == 0
    out = run("parties", "list", db=db_url).stdout
    assert any(LONG in line for line in out.splitlines()), out
    assert "…" not in out
    assert all(line == line.rstrip() for line in out.splitlines())


def test_a_record_piped_to_a_file_has_no_trailing_padding(db_url: str) -> None:
    assert run("parties", "add", LONG, "--hq", "SG", db=db_url).returncode == 0
    out = run("parties", "show", LONG, db=db_url).stdout
    assert LONG in out and all(line == line.rstrip() for line in out.splitlines()), out
