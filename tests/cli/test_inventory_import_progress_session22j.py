"""Session 22j: `veuctl inventory import` draws a progress bar on a terminal only; piped output is unchanged."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from agent.parties import add_party, add_site
from agent.store import session_scope

HEADER = "site,accelerator,count,owner,operator,serial\n"


@pytest.fixture()
def register(db_url: str, tmp_path: Path) -> Path:
    with session_scope(db_url) as s:
        add_party(s, "Acme Cloud", "US")
        add_party(s, "Acme Ops", "IE")
        add_site(s, "Dublin DC1", "IE")
    p = tmp_path / "reg.csv"
    p.write_text(HEADER + "".join(f"Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,S{i}\n" for i in range(30)),
                 encoding="utf-8")
    return p


def _veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    code = run_app(app)
    out = capsys.readouterr()
    return code, out.out, out.err


def _terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Both streams a terminal, as for a person at one; what the bar draws goes to the returned buffer."""
    import agent.cli.inventory as inv

    drawn = io.StringIO()
    monkeypatch.setattr(inv, "err_console", Console(file=drawn, force_terminal=True, width=120))
    monkeypatch.setattr(inv, "console", Console(file=io.StringIO(), force_terminal=True, width=120))
    return drawn


def test_piped_import_prints_only_the_summary(register: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "import", str(register))
    assert code == 0, err
    assert err == ""
    assert "validating" not in out and "writing" not in out
    assert "30" in out  # the summary table: observed/added


def test_import_on_a_terminal_draws_validation_and_writing_progress(
        register: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = _terminal(monkeypatch)
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "import", str(register))
    assert code == 0, err
    bar = drawn.getvalue()
    assert "validating" in bar and "writing" in bar and "30/30" in bar
    assert "30" in out  # the summary still printed


def test_json_import_on_a_terminal_draws_no_bar(register: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = _terminal(monkeypatch)
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "import", str(register), "--json")
    assert code == 0, err
    assert drawn.getvalue() == ""
    assert json.loads(out)["added"] == 30


def test_a_terminal_for_errors_but_stdout_piped_draws_no_bar(
        register: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.cli.inventory as inv

    drawn = io.StringIO()
    monkeypatch.setattr(inv, "err_console", Console(file=drawn, force_terminal=True, width=120))
    code, _, err = _veuctl(capsys, monkeypatch, "inventory", "import", str(register))
    assert code == 0, err
    assert drawn.getvalue() == ""
