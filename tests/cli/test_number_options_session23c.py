"""A number option given something that is not a number (`--limit x`) or out of its range (`--limit 0`) says so in
the operator's words, naming the option and what to write: one line, exit 2, nothing written.

Typer 0.29 passes pydantic's words through (``Invalid value for '--limit': Input should be a valid integer, unable
to parse string as an integer``): neither "whole number" nor an example of what to type.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.cli import COMMANDS, _commands_of
from tests.cli.test_cli_error_naming import refused


@pytest.mark.parametrize(("args", "line"), [
    (["inventory", "show", "--limit", "x"], '--limit: "x" is not a whole number; write e.g. --limit 50'),
    (["inventory", "show", "--limit=x"], '--limit: "x" is not a whole number; write e.g. --limit 50'),
    (["inventory", "show", "--limit", "1.5"], '--limit: "1.5" is not a whole number; write e.g. --limit 50'),
    (["inventory", "show", "--limit", ""], '--limit: "" is not a whole number; write e.g. --limit 50'),
    (["shipments", "list", "--offset", "ten"], '--offset: "ten" is not a whole number; write e.g. --offset 100'),
    (["tokens", "create", "--role", "auditor", "--expires", "30d"],
     '--expires: "30d" is not a whole number; write e.g. --expires 30'),
    (["chips", "classify", "--rate", "FP8=1979", "--die-area", "big"],
     '--die-area: "big" is not a number; write e.g. --die-area 814'),
    (["dd", "check", "--transistors", "lots"], '--transistors: "lots" is not a number; write e.g. --transistors 8e10'),
    (["cases", "show", "first"], 'CASE_ID: "first" is not a whole number; write e.g. 1'),
    (["db", "copy", "--from", "sqlite:///a.db", "--to", "sqlite:///b.db", "--batch", "1e3"],
     '--batch: "1e3" is not a whole number; write e.g. --batch 2000'),
])
def test_a_number_option_given_text_says_to_write_a_number(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], line: str,
) -> None:
    assert refused(monkeypatch, capsys, args, "", fleet) == f"error: {line}"


@pytest.mark.parametrize(("args", "line"), [
    (["inventory", "runs", "--limit", "0"],
     "--limit: 0 is out of range; write a whole number from 1 to 1000, e.g. --limit 20"),
    (["audit", "log", "--limit", "99999"],
     "--limit: 99999 is out of range; write a whole number from 1 to 10000, e.g. --limit 50"),
    (["audit", "verify", "--from", "0"], "--from: 0 is out of range; write a whole number from 1, e.g. --from 1"),
])
def test_a_number_option_out_of_its_range_says_the_range(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], line: str,
) -> None:
    assert refused(monkeypatch, capsys, args, "", fleet) == f"error: {line}"


def _number_params() -> list[tuple[list[str], Any]]:
    """(command path, parameter) for every int or float option, and every first int argument, of every command."""
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)
        arguments = [p for p in getattr(command, "params", ()) if p.param_type_name == "argument"]
        for p in getattr(command, "params", ()):
            if p.type_descriptor.annotation in (int, float) and (p.param_type_name == "option" or p is arguments[0]):
                found.append((path, p))

    for module in sorted(set(COMMANDS.values())):
        for name, command in _commands_of(module).items():
            walk([name], command)
    return found


@pytest.mark.parametrize(("path", "param"), _number_params(),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v.name)
def test_every_number_option_says_what_to_write(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: list[str], param: Any,
) -> None:
    name = max(param.opts, key=len) if param.param_type_name == "option" else param.name.upper()
    args = [*path, name, "x"] if param.param_type_name == "option" else [*path, "x"]
    whole = "a whole number" if param.type_descriptor.annotation is int else "a number"
    line = refused(monkeypatch, capsys, args, f'{name}: "x" is not {whole}; write e.g. ', fleet)
    assert "Input should" not in line and "Invalid value" not in line


@pytest.mark.parametrize(("args", "line"), [
    (["--limit", "0"], "--limit: 0 is not 1-1000; give the holdings per page, e.g. --limit 100"),
    (["--limit", "5000"], "--limit: 5000 is not 1-1000; give the holdings per page, e.g. --limit 100"),
    (["--offset", "-1"], "--offset: -1 is below 0; give the holdings to skip, e.g. --offset 100 for the next page"),
    (["--part", "denominator"], "--part: 'denominator' is not numerator or all"),
])
def test_caps_explain_paging_names_the_one_option_at_fault_and_its_value(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], line: str,
) -> None:
    # It said "--limit: 1-1000; --offset: 0 or more" whichever was wrong, and "--part: numerator or all".
    got = refused(monkeypatch, capsys, ["caps", "explain", "aurora", "uveu.outside_tier1.owned", *args], "", fleet)
    assert got == f"error: {line}"
