"""A Supp. 10 ¶10 chip accounting recorded as filed long before its reporting date needs ``--early``.

Supp. 10 ¶10: the VEU reports its chip accounting "each February 1 and August 1", and ¶6 measures the caps "on the
reporting dates outlined in Section 10": the accounting is as of its reporting date, with no period of its own. A
filing is accepted without ``--early`` once the deadline is due (from ``lead_days`` of ``obligation-reminders``,
30 days by default, before the reporting date), as before; earlier than that it is almost always a typo or the wrong
date's key, and recording it would mark the real accounting done before it exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

import pytest
from sqlmodel import select

from agent import obligations as svc
from agent.packs import registry
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.obligations import ObligationFiling

KEY = "chip-accounting:a-uveu:2025-08-01"
Veuctl = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def seeded(db_url: str) -> str:
    with session_scope(db_url) as s:
        add_party(s, "Aurora", "US")
        svc.add_authorization(s, registry(), "a-uveu", date(2025, 3, 1), "uveu", "Aurora")
    return db_url


@pytest.fixture()
def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Veuctl:
    from agent.cli import app
    from agent.cli._common import run_app

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["veuctl", *args])
        rc = run_app(app)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def _filings(url: str) -> dict[str, date]:
    with session_scope(url) as s:
        return {f.key: f.filed_on for f in s.exec(select(ObligationFiling)).all()}


def _entries(url: str) -> list[dict[str, object]]:
    with session_scope(url) as s:
        return [json.loads(e.payload) for e in s.exec(
            select(AuditEntry).where(AuditEntry.action == "obligations.deadline.file")).all()]


def test_cli_a_chip_accounting_filed_months_before_it_is_due_is_refused(seeded: str, veuctl: Veuctl) -> None:
    for on in ("2025-03-01", "2025-07-01"):  # 2025-07-02 is the first day of the 30-day window
        rc, _, err = veuctl("deadlines", "file", KEY, "--on", on)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: --on: {on} is before {KEY} is due"), err
        assert "2025-07-02" in err and "reporting date 2025-08-01" in err and "--early" in err, err
    assert _filings(seeded) == {} and _entries(seeded) == []


def test_cli_a_chip_accounting_filed_inside_its_window_or_after_needs_no_early(seeded: str, veuctl: Veuctl) -> None:
    rc, _, err = veuctl("deadlines", "file", KEY, "--on", "2025-07-02")
    assert rc == 0, err
    assert _entries(seeded) == [{"filed_on": "2025-07-02", "reference": ""}]


def test_cli_early_records_an_early_chip_accounting_and_says_so(seeded: str, veuctl: Veuctl) -> None:
    rc, _, err = veuctl("deadlines", "file", KEY, "--on", "2025-03-01", "--early")
    assert rc == 0, err
    assert _filings(seeded) == {KEY: date(2025, 3, 1)}
    [entry] = _entries(seeded)
    assert entry["early"] is True and entry["due"] == "2025-08-01", entry


def test_api_an_early_chip_accounting_is_a_422_naming_filed_on(seeded: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    c = TestClient(create_app(seeded))
    r = c.post("/api/v1/deadlines/filings", json={"key": KEY, "filed_on": "2025-03-01"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"filed_on: 2025-03-01 is before {KEY} is due"), detail
    assert "--" not in detail, detail
    r = c.post("/api/v1/deadlines/filings", json={"key": KEY, "filed_on": "2025-03-01", "early": True})
    assert r.status_code == 201, r.text
