"""A `veuctl` error names the option the user typed (``--region: ...``, not ``mars-1: ...``), a suggested fix
command runs as it is copied (a multi-word name is quoted), and nothing stored changes on bad input.

Commands run in-process (``run_app`` with ``sys.argv``) against a fresh store with a small fleet.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from agent.cli import COMMANDS, _commands_of, app
from agent.cli._common import run_app


def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(app)
    out, err = capsys.readouterr()
    return rc, out, err


def _rows(url: str) -> dict[str, int]:
    """Rows per table (the audit log too): what any write would change, on SQLite or PostgreSQL."""
    from sqlalchemy import inspect, text

    from agent.store.db import get_engine

    eng = get_engine(url)
    with eng.connect() as c:
        return {t: int(c.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one())
                for t in inspect(eng).get_table_names()}


def refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], starts: str,
            url: str | None = None) -> str:
    """Run ``veuctl *args`` in-process: exit code 2, one error line starting ``error: {starts}``, no traceback, and
    (given the store's ``url``) nothing written."""
    before = _rows(url) if url else None
    rc, _, err = veuctl(monkeypatch, capsys, *args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {starts}"), lines[0]
    assert "Traceback" not in err
    if url:
        assert _rows(url) == before
    return lines[0]


PATHS = ["paths", "--items", "H100 x 8", "--consignee", "Falcon", "--country", "AE"]
SHIP = ["shipments", "add", "--date", "2025-06-01", "--consignee", "Falcon", "--destination", "AE", "--chip", "h100",
        "--count", "1"]
HW = ["--chip", "h100", "--count", "2", "--hours", "3"]

# (arguments, what the one error line starts with after "error: ")
NAMED: list[tuple[list[str], str]] = [
    (["parties", "add", "X", "--hq", "SG", "--parent", "Nobody"], "--parent: 'Nobody' is not registered"),
    (["sites", "add", "b", "--country", "Germany1"], "--country: 'Germany1' is not an ISO 3166"),
    (["sites", "add", "b", "--provider", "aws", "--region", "mars-1"], "--region: mars-1: not a known aws region"),
    (["sites", "add", "b", "--provider", "nocloud", "--region", "r"], "--provider: 'nocloud'"),
    (["models", "add", "m", "--owner", "Lumen Analytics Pte"], "--owner: party 'Lumen Analytics Pte' is not"),
    (["models", "add", "m", "--owner", "Lumen", "--base", "nobase"], "--base: model 'nobase' is not in the ledger"),
    (["models", "add-run", "frontier-1", *HW, "--start", "2026-03-01", "--end", "2026-01-01"],
     "--end: 2026-01-01 is before"),
    (["models", "show", "frontier-1", "--regime", "bogus"], "--regime: bogus: no loaded policy pack"),
    (["models", "list", "--regime", "bogus"], "--regime: bogus: no loaded policy pack"),
    (["estimate", "--chip", "nochip", "--count", "2", "--hours", "3"], "--chip: nochip: not in catalog"),
    (["estimate", *HW, "--precision", "FP7"], "--precision: 'FP7' is not a training precision"),
    (["estimate", "--chip", "h100", "--count", "2"], "--count/--hours: the hardware method needs"),
    (["estimate", "--tokens", "1e12"], "--params: give the parameter count"),
    (["whatif", "aurora", "--add", "1", "--chip", "nochip", "--site", "iad"], "--chip: nochip: not in catalog"),
    (["dd", "check", "--packaging", "bogus"], "--packaging: 'bogus' is not one of"),
    (["dd", "check", "--designer-status", "bogus"], "--designer-status: 'bogus' is not one of"),
    ([*PATHS[:-1], "ZZ"], "--country: 'ZZ' is not an ISO 3166"),
    ([*PATHS[:4], "Nobody", *PATHS[5:]], "--consignee: 'Nobody' is not registered"),
    ([*PATHS, "--operator", "Nobody"], "--operator: 'Nobody' is not registered"),
    (["paths", "--items", "Unobtainium x 5", *PATHS[3:]], "--items: Unobtainium: not in catalog"),
    (["weights", "export", "frontier-1", "--to", "Falcon", "--country", "ZZ"], "--country: 'ZZ' is not an ISO"),
    (["weights", "export", "frontier-1", "--to", "Nobody", "--country", "AE"], "--to: 'Nobody' is not registered"),
    (["deadlines", "event", "ref1", "--kind", "transfer", "--on", "2025-06-01", "--from", "ZZ", "--to", "DE",
      "--authorization", "aurora"], "--from: 'ZZ' is not an ISO 3166"),
    (["deadlines", "authorize", "aurora", "--granted", "2025-03-01", "--location", "ZZ"], "--location: 'ZZ'"),
    ([*SHIP, "--via", "uveu", "--authorization", "nope"], "--authorization: 'nope' is not registered"),
    (["reservations", "list", "--authorization", "nope"], "--authorization: 'nope' is not registered"),
    # A transfer or a new location is made under an authorization: say it is missing, not that '' is unknown.
    (["deadlines", "event", "ref1", "--kind", "transfer", "--on", "2026-01-01", "--from", "ZZ", "--to", "DE"],
     "--authorization: required for a transfer"),
    (["deadlines", "event", "ref2", "--kind", "new-location", "--on", "2026-01-01", "--to", "DE", "--site", "x"],
     "--authorization: required for a new-location"),
    (["deadlines", "event", "ref3", "--kind", "incident", "--on", "2025-06-01", "--authorization", "nope"],
     "--authorization: 'nope' is not registered"),
]


@pytest.mark.parametrize(("args", "starts"), NAMED, ids=[" ".join(a[:2]) + " " + s.split(":")[0] for a, s in NAMED])
def test_bad_input_is_one_line_naming_the_option_and_changes_nothing(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], starts: str,
) -> None:
    before = _rows(fleet)
    rc, _, err = veuctl(monkeypatch, capsys, *args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {starts}"), lines[0]
    assert _rows(fleet) == before


def _suggested(err: str) -> list[str]:
    """The veuctl command line an error suggests, split as a shell splits it."""
    m = re.search(r"`(veuctl [^`]*)`", err)
    assert m, err
    return shlex.split(m.group(1))


@pytest.mark.parametrize(("args", "command"), [
    (["authorizations", "add", "a1", "--kind", "uveu", "--holder", "Aurora Compute Inc."],
     ["parties", "add", "Aurora Compute Inc."]),
    (["models", "add", "m", "--owner", "Nobody & Sons"], ["parties", "add", "Nobody & Sons"]),
    (["models", "add", "m", "--owner", "Lumen", "--base", "my base model"], ["models", "add", "my base model"]),
    ([*SHIP, "--via", "lpp", "--consignee", "Nobody Corp"], ["parties", "add", "Nobody Corp"]),
    ([*SHIP, "--via", "uveu", "--authorization", "my uveu"], ["authorizations", "add", "my uveu"]),
    (["parties", "show", "O'Brien Labs"], ["parties", "add", "O'Brien Labs"]),
    (["parties", "add", "X", "--hq", "SG", "--parent", "Pear Holdings"], ["parties", "add", "Pear Holdings"]),
    ([*PATHS[:4], "Nobody Corp", *PATHS[5:]], ["parties", "add", "Nobody Corp"]),
    (["whatif", "aurora", "--move", "1", "--chip", "h100", "--site", "dxb", "--to", "new site"],
     ["sites", "add", "new site"]),
])
def test_a_suggested_command_keeps_a_multi_word_name_one_word(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
    command: list[str],
) -> None:
    rc, _, err = veuctl(monkeypatch, capsys, *args)
    assert rc == 2, err
    words = _suggested(err)
    assert words[:len(command) + 1] == ["veuctl", *command], err


def test_the_suggested_party_command_registers_the_name_as_typed(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    rc, _, err = veuctl(monkeypatch, capsys, "authorizations", "add", "a1", "--kind", "uveu", "--holder",
                        "Aurora Compute Inc.")
    assert rc == 2
    words = [w if w != "CC" else "US" for w in _suggested(err)]
    assert veuctl(monkeypatch, capsys, *words[1:])[0] == 0
    rc, out, err = veuctl(monkeypatch, capsys, "authorizations", "add", "a1", "--kind", "uveu", "--holder",
                          "Aurora Compute Inc.", "--json")
    assert rc == 0, err
    assert json.loads(out)["holder"] == "Aurora Compute Inc."


def test_weights_store_names_a_model_missing_from_the_ledger_first(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    before = _rows(fleet)
    rc, _, err = veuctl(monkeypatch, capsys, "weights", "store", "nomodel", "--site", "fra")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: model: 'nomodel' is not in the ledger") and "--device" in err, err
    assert err.index("model:") < err.index("--device")
    rc, _, err = veuctl(monkeypatch, capsys, "weights", "store", "nomodel", "--site", "nowhere", "--device", "d1")
    assert rc == 2 and err.startswith("error: model: 'nomodel'") and "--site: 'nowhere'" in err, err
    assert _rows(fleet) == before
    # A model in the ledger: only what is wrong.
    rc, _, err = veuctl(monkeypatch, capsys, "weights", "store", "frontier-1", "--site", "fra")
    assert rc == 2 and err.startswith("error: --device:"), err
    # Weights of a model not (yet) in the ledger may be recorded: said, on stderr, and stored.
    rc, _, err = veuctl(monkeypatch, capsys, "weights", "store", "nomodel", "--site", "fra", "--device", "d1")
    assert rc == 0 and "warning" in err and "'nomodel' is not in the ledger" in err, err
    rc, _, err = veuctl(monkeypatch, capsys, "weights", "store", "frontier-1", "--site", "fra", "--device", "d1")
    assert rc == 0 and err == "", err


def test_sync_namespaces_reports_a_cluster_it_cannot_read_without_a_traceback(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("collectors:\n  k8s:\n    clusters:\n      - name: fra-1\n        kubeconfig: /nonexistent\n")
    before = _rows(fleet)
    rc, out, err = veuctl(monkeypatch, capsys, "parties", "sync-namespaces", "--config", str(cfg), "--json")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1, err
    assert lines[0].startswith("error: cluster fra-1") and "/nonexistent" in lines[0]
    (row,) = json.loads(out)
    assert row["cluster"] == "fra-1" and row["status"] == "failed" and "/nonexistent" in row["error"]
    assert _rows(fleet) == before
    rc, out, err = veuctl(monkeypatch, capsys, "parties", "sync-namespaces", "--config", str(cfg))
    assert rc == 1 and "failed" in out and "Traceback" not in err and "/nonexistent" in err


def test_text_tables_print_a_missing_value_as_an_empty_cell(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for args in (["controls", "show", "iad"], ["models", "list"], ["reservations", "list", "--all"],
                 ["authorizations", "list"]):
        rc, out, err = veuctl(monkeypatch, capsys, *args)
        assert rc == 0, err
        assert "None" not in out, out
    rc, out, _ = veuctl(monkeypatch, capsys, "controls", "show", "iad", "--json")
    assert json.loads(out)["paragraphs"][0]["review_date"] is None  # JSON keeps null


def test_every_option_and_argument_has_a_help_text() -> None:
    missing = set()
    for module in sorted(set(COMMANDS.values())):
        def walk(cmd: object, path: list[str]) -> None:
            subs = getattr(cmd, "commands", None)
            if subs is not None:
                for name, sub in subs.items():
                    walk(sub, [*path, name])
                return
            for p in cmd.params:  # type: ignore[attr-defined]
                if not (getattr(p, "help", None) or "").strip():
                    missing.add((" ".join(path), p.opts[0] if p.opts else p.name))

        for name, cmd in _commands_of(module).items():
            walk(cmd, [name])
    assert not missing, sorted(missing)


def test_the_core_quotes_every_name_it_puts_in_a_command(db_url: str) -> None:
    from agent import parties
    from agent.store import session_scope
    from policies.errors import PartyError

    with session_scope(db_url) as s, pytest.raises(PartyError) as exc:
        parties.get_party(s, "A B; rm -rf /")
    assert "`veuctl parties add 'A B; rm -rf /' --hq CC`" in str(exc.value)
