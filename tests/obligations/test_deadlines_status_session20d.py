"""Deadlines and the Supp. 10 register as of a date: the rule's legal status shown, operator packs that change
report dates checked where they are read, evidence not dated in the future, and reminder mail that says when the
rule behind a deadline is not enforced.

Dates checked by hand against § 748.15(f)(1)(iii) (reports due July 15 for January-June and January 15 for the
previous July-December) and Supp. 10 ¶10 (chip accounting each February 1 and August 1); the AI Diffusion rule is
codified and enforced from 2025-01-13, codified and not enforced from 2025-05-13 (BIS press release).
"""

from __future__ import annotations

import email
import json
import socket
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest

from agent import obligations as svc
from agent.packs import load_yaml, registry
from agent.parties import add_party
from agent.store import session_scope
from policies import obligations as ob
from policies.errors import PolicyError
from policies.packs import PackRegistry, parse_pack

Veuctl = Callable[..., tuple[int, str, str]]
AUTH = ob.VeuAuthorization("ACME-UVEU", "uveu", "Acme", date(2025, 3, 1))


@pytest.fixture()
def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Veuctl:
    from agent.cli import app
    from agent.cli._common import run_app

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["veuctl", *args])
        monkeypatch.setenv("COLUMNS", "250")
        rc = run_app(app)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture()
def seeded(db_url: str) -> str:
    with session_scope(db_url) as s:
        add_party(s, "Aurora", "US")
        svc.add_authorization(s, registry(), "a-uveu", date(2025, 3, 1), "uveu", "Aurora")
    return db_url


def _with_reporting(packs: PackRegistry, values: str) -> PackRegistry:
    doc = load_yaml(f"""
id: acme-reporting
version: "1"
title: Acme reporting dates
provisions:
  - id: veu-reporting
    title: reports
    citation: "licence D1, condition 3"
    effective_from: 2026-01-01
    status: [{{since: 2026-01-01, codified: false, enforced: true}}]
    values: {values}
""")
    return PackRegistry([*packs.packs, parse_pack(doc, "acme.yaml")])


# ------------------------------------------------------------------ report dates in an operator pack


@pytest.mark.parametrize(("values", "field"), [
    ('{end_user_report_due: ["01-15", "07-15"], chip_accounting_due: ["02-30", "08-01"]}', "chip_accounting_due"),
    # 29 February is no date in 2027: a pack that names it broke every non-leap year's deadlines.
    ('{end_user_report_due: ["01-15", "07-15"], chip_accounting_due: ["02-29", "08-01"]}', "chip_accounting_due"),
    ('{end_user_report_due: ["1/15", "07-15"], chip_accounting_due: ["02-01", "08-01"]}', "end_user_report_due"),
    ('{end_user_report_due: "01-15", chip_accounting_due: ["02-01", "08-01"]}', "end_user_report_due"),
    # Both in January-June: the January-June report would be due before its period ended.
    ('{end_user_report_due: ["01-15", "06-15"], chip_accounting_due: ["02-01", "08-01"]}', "end_user_report_due"),
])
def test_a_report_date_that_is_no_day_of_every_year_is_refused_naming_the_field(
        packs: PackRegistry, values: str, field: str) -> None:
    # Refused as the pack loads (policies.packs checks veu-reporting's values), naming the file and the value.
    with pytest.raises(PolicyError) as exc:
        ob.deadlines(_with_reporting(packs, values), date(2026, 3, 1), [AUTH])
    msg = str(exc.value)
    assert f"values.{field}" in msg and "acme.yaml" in msg and "veu-reporting" in msg and "\n" not in msg, msg


def test_the_half_year_report_dates_are_read_by_the_half_they_follow_not_by_their_order(packs: PackRegistry) -> None:
    # Written in period order (H1's date first), the January-June report was due January 15 of its own year:
    # before the period it covers had begun to end.
    reg = _with_reporting(packs, '{end_user_report_due: ["07-31", "01-31"], chip_accounting_due: ["02-01", "08-01"]}')
    ds = [d for d in ob.deadlines(reg, date(2026, 3, 1), [AUTH]) if d.kind == "veu-semiannual-report"]
    by = {d.key: d.due for d in ds}
    assert by["veu-report:ACME-UVEU:2026H1"] == date(2026, 7, 31)
    assert by["veu-report:ACME-UVEU:2026H2"] == date(2027, 1, 31)
    assert all(d.period is not None and d.due > d.period[1] for d in ds)


# ------------------------------------------------------------------ legal status shown as of the date


def test_cli_deadlines_list_says_the_rule_is_not_enforced_inside_the_non_enforcement_window(
        seeded: str, veuctl: Veuctl) -> None:
    rc, out, err = veuctl("deadlines", "list", "--as-of", "2025-04-01")
    assert rc == 0, err
    assert "veu-report:a-uveu:2025H1" in out and "not enforced" not in out  # enforced before 2025-05-13
    rc, out, err = veuctl("deadlines", "list", "--as-of", "2025-06-01")
    assert rc == 0, err
    row = next(line for line in out.splitlines() if "veu-report:a-uveu:2025H1" in line)
    assert "not enforced" in row, out  # listed, never hidden, and marked
    assert "codified" in out


def test_cli_controls_show_marks_unconfirmed_paragraphs_and_the_rules_status(
        db_url: str, veuctl: Veuctl) -> None:
    from agent.parties import add_site

    with session_scope(db_url) as s:
        add_site(s, "ae-dc1", "AE")
    rc, out, err = veuctl("controls", "show", "ae-dc1", "--as-of", "2025-04-01")
    assert rc == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert "UNCONFIRMED" in rows["9"] and "UNCONFIRMED" in rows["13"] and "UNCONFIRMED" not in rows["10"]
    assert "not enforced" not in out
    rc, out, err = veuctl("controls", "show", "ae-dc1", "--as-of", "2025-06-01")
    assert rc == 0, err
    assert "not enforced" in out and "codified" in out


def test_evidence_dated_after_today_is_refused_naming_the_option(db_url: str, veuctl: Veuctl) -> None:
    from agent.parties import add_site

    with session_scope(db_url) as s:
        add_site(s, "ae-dc1", "AE")
    rc, _, err = veuctl("controls", "evidence", "ae-dc1", "-p", "14", "--kind", "attestation",
                        "--statement", "NIST 800-53 audit passed", "--by", "alice", "--on", "2099-01-01")
    assert rc == 2 and err.startswith("error: --on: 2099-01-01 is after today") and err.count("\n") == 1, err
    rc, out, err = veuctl("controls", "show", "ae-dc1", "--json")
    assert rc == 0 and all(p["evidence"] == [] for p in json.loads(out)["paragraphs"])  # nothing recorded


# ------------------------------------------------------------------ reminder mail


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def smtp_server() -> Iterator[tuple[int, list[str]]]:
    from aiosmtpd.controller import Controller

    got: list[str] = []

    class Collect:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = email.message_from_bytes(envelope.content)
            got.append(msg.get_payload(decode=True).decode("utf-8"))
            return "250 OK"

    port = _free_port()
    ctl = Controller(Collect(), hostname="127.0.0.1", port=port)
    ctl.start()
    yield port, got
    ctl.stop()


def test_reminder_mail_says_the_rule_behind_a_deadline_is_not_enforced(
        db_url: str, smtp_server: tuple[int, list[str]]) -> None:
    port, got = smtp_server
    with session_scope(db_url) as s:
        svc.add_event(s, "incident", "INC-1", date(2025, 9, 10), description="drive missing")
    cfg = svc.NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_to="ops@example.com")
    with session_scope(db_url) as s:
        out = svc.send_reminders(s, registry(), date(2025, 9, 11), cfg)
    assert out["sent"][0]["ok"] and len(got) == 1
    line = next(x for x in got[0].splitlines() if "INC-1" in x)
    assert "not enforced" in line and "codified" in line, got[0]
    # Sent once for the deadline and its status.
    with session_scope(db_url) as s:
        assert svc.send_reminders(s, registry(), date(2025, 9, 12), cfg)["sent"] == []
    assert len(got) == 1


# ------------------------------------------------------------------ events not yet known on the as-of date


def test_an_incident_discovered_after_the_as_of_date_owes_nothing_on_that_date(packs: PackRegistry) -> None:
    # As a filing after the as-of date does not count as done, a theft discovered after it had not happened yet:
    # listing its report as "upcoming" on 2025-06-01 told a reader of that day about a loss of 2026.
    inc = ob.Incident("INC-B", date(2026, 2, 10), "pallet lost")
    assert not [d for d in ob.deadlines(packs, date(2025, 6, 1), [], incidents=[inc]) if d.kind == "theft-loss-report"]
    on_day = [d for d in ob.deadlines(packs, date(2026, 2, 10), [], incidents=[inc]) if d.kind == "theft-loss-report"]
    assert [(d.due, d.status) for d in on_day] == [(date(2026, 3, 12), "due")]  # 10 Feb + 30 days (28-day February)
    unmet = [("site:dc:p14", date(2026, 2, 10))]
    assert [d for d in ob.deadlines(packs, date(2026, 2, 9), [], unmet=unmet)] == []
    assert [d.due for d in ob.deadlines(packs, date(2026, 2, 10), [], unmet=unmet)] == [date(2026, 2, 10)]
