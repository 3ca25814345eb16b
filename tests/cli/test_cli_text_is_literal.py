"""Text output prints stored text as it is: square brackets in a name are not Rich markup."""

from __future__ import annotations

import os
import subprocess
import sys

VEUCTL = [sys.executable, "-m", "agent"]


def run(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": db, "COLUMNS": "200"}
    return subprocess.run([*VEUCTL, *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_party_named_with_a_closing_tag_is_stored_listed_and_shown_without_a_traceback(db_url: str) -> None:
    r = run("parties", "add", "Bad [/x] Co", "--hq", "US", db=db_url)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "Bad [/x] Co" in r.stdout
    for args in (("parties", "list"), ("parties", "show", "Bad [/x] Co")):
        r = run(*args, db=db_url)
        assert r.returncode == 0 and "Bad [/x] Co" in r.stdout, r.stdout + r.stderr


def test_a_name_that_looks_like_a_style_is_printed_not_applied(db_url: str) -> None:
    assert run("parties", "add", "Evil [bold]Corp[/bold]", "--hq", "DE", db=db_url).returncode == 0
    assert "Evil [bold]Corp[/bold]" in run("parties", "list", db=db_url).stdout
    r = run("sites", "add", "dc[/b]", "--country", "DE", db=db_url)
    assert r.returncode == 0, r.stderr
    listing = run("sites", "list", db=db_url)
    assert listing.returncode == 0 and "dc[/b]" in listing.stdout, listing.stdout + listing.stderr


def test_a_missing_value_is_an_empty_cell_not_none(db_url: str) -> None:
    assert run("parties", "add", "Plain Co", "--hq", "DE", db=db_url).returncode == 0
    r = run("models", "add", "plain-model", "--owner", "Plain Co", db=db_url)
    assert r.returncode == 0, r.stderr
    out = run("models", "list", db=db_url).stdout
    assert "plain-model" in out and "None" not in out  # no base model
