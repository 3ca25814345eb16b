"""`veuctl` itself: the command map, only the running command's module loaded, usage errors in one line."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest
import typer

import agent.cli as cli

VEUCTL = [sys.executable, "-m", "agent"]


def test_the_command_map_is_exactly_what_the_modules_register() -> None:
    registered: dict[str, str] = {}
    for m in pkgutil.iter_modules(cli.__path__):
        if m.name.startswith("_"):
            continue
        for name in cli._commands_of(m.name):
            assert name not in registered, f"{name} registered by {registered.get(name)} and {m.name}"
            registered[name] = m.name
    assert registered == cli.COMMANDS


def test_a_rules_only_command_starts_without_the_store_or_the_other_commands() -> None:
    probe = ("import sys; from typer.testing import CliRunner; from agent.cli import app; "
             "r = CliRunner().invoke(app, ['tier', 'DE', '--json']); assert r.exit_code == 0, r.output; "
             "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'agent.cases', 'agent.cli.caps') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("args", "says"), [
    (["nosuch"], "No such command 'nosuch'"),
    (["tier"], "Missing argument 'country'"),
    (["tier", "DE", "--bogus"], "No such option: --bogus"),
    (["cases", "show", "abc"], 'CASE_ID: "abc" is not a whole number'),
])
def test_usage_errors_exit_2_with_one_line_not_a_traceback(args: list[str], says: str) -> None:
    r = subprocess.run([*VEUCTL, *args], capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.stderr


def test_help_lists_every_command() -> None:
    r = subprocess.run([*VEUCTL, "--help"], capture_output=True, text=True, timeout=120,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    for name in cli.COMMANDS:
        assert f" {name} " in r.stdout, name
    assert isinstance(cli.app, typer.Typer)
