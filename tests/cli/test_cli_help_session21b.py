"""`veuctl ... --help` showed `--json <bool>`, as if the flag took a value: typer 0.29 (pinned in constraints.txt)
prints a type in the help panel's type column for every option, flags included, unless the option names a
metavar. agent.cli gives every flag (and --help) an empty one; `--json` still takes no value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

VEUCTL = [sys.executable, "-m", "agent"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VEUCTL, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "160"})


def test_help_shows_json_as_a_flag() -> None:
    for command in (["caps", "show"], ["tier"], ["db", "current"]):
        r = _run(*command, "--help")
        assert r.returncode == 0, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if "--json" in ln)
        assert re.search(r"--json\s+Print machine-readable JSON\.", line), line
        assert "<bool>" not in line, line
        if command != ["tier"]:  # options that take a value still show their type
            assert re.search(r"--db\s+<str>", r.stdout), r.stdout


def test_json_still_takes_no_value() -> None:
    r = _run("tier", "DE", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)
    r = _run("tier", "DE", "--json=yes")
    assert r.returncode == 2 and "does not take a value" in r.stderr, r.stderr


def test_no_help_page_shows_a_type_for_a_flag() -> None:
    """Every flag, --help included, on the root, a group and commands of several modules."""
    for command in ([], ["caps"], ["agent", "run"], ["cases", "resolve"], ["audit", "prune"], ["caps", "show"]):
        r = _run(*command, "--help")
        assert r.returncode == 0, r.stderr
        assert "<bool>" not in r.stdout, (command, r.stdout)
