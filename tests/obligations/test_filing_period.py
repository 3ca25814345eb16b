"""A periodic report recorded as filed before its period ended is refused, naming the period and its end date.

§ 748.15(f)(1)(iii): the semi-annual report due July 15 covers January 1 through June 30, the one due January 15
the previous July 1 through December 31. A filing dated on or before the period's last day is almost always a
typo (or the wrong period's key) and would mark the real report done before it exists; ``--early`` (API
``"early": true``) records it anyway, and the audit entry says so. Notices are filed ahead of their due date as
before.

A Supp. 10 ¶10 chip accounting ("each February 1 and August 1"; ¶6 measures the caps "on the reporting dates") is
as of its reporting date, with no period of its own: it is filed without ``--early`` once it is due (``lead_days``
of ``obligation-reminders``, 30 days by default, before the reporting date); earlier than that is refused the same
way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import obligations as svc
from agent.packs import registry
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import utc_today
from agent.store.tables.obligations import ObligationFiling

H1 = "veu-report:a-uveu:2025H1"  # 2025-01-01 to 2025-06-30, due 2025-07-15
H2 = "veu-report:a-uveu:2025H2"  # 2025-07-01 to 2025-12-31, due 2026-01-15
KEY = "chip-accounting:a-uveu:2025-08-01"  # as of 2025-08-01, due from 2025-07-02 (30 days' lead)

Veuctl = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def seeded(db_url: str) -> str:
    with session_scope(db_url) as s:
        add_party(s, "Aurora", "US")
        svc.add_authorization(s, registry(), "a-uveu", date(2025, 3, 1), "uveu", "Aurora")
    return db_url


@pytest.fixture()
def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Veuctl:
    """`veuctl ARGS` in-process (the binary's entry point and error mapping): (rc, stdout, stderr)."""
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


def _filing_entries(url: str) -> list[dict[str, object]]:
    with session_scope(url) as s:
        return [json.loads(e.payload) for e in s.exec(
            select(AuditEntry).where(AuditEntry.action == "obligations.deadline.file")).all()]


def test_cli_a_report_filed_on_or_before_its_periods_last_day_is_refused_naming_the_period(
        seeded: str, veuctl: Veuctl) -> None:
    for on, key in (("2025-06-30", H1), ("2025-01-20", H1), ("2025-03-01", H2)):
        rc, _, err = veuctl("deadlines", "file", key, "--on", on)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: --on: {on} is before the end of the reporting period"), err
        assert "--early" in err
    _, _, err = veuctl("deadlines", "file", H1, "--on", "2025-06-30")
    assert "2025 H1 (2025-01-01 to 2025-06-30)" in err and "ends on 2025-06-30" in err and "due 2025-07-15" in err
    assert _filings(seeded) == {} and _filing_entries(seeded) == []  # nothing recorded
    # The day after the period ends is a filing like any other, with no "early" in its audit entry.
    rc, _, err = veuctl("deadlines", "file", H1, "--on", "2025-07-01", "--reference", "BIS-1")
    assert rc == 0, err
    assert _filings(seeded) == {H1: date(2025, 7, 1)}
    assert _filing_entries(seeded) == [{"filed_on": "2025-07-01", "reference": "BIS-1"}]


def test_cli_early_records_the_filing_and_says_so_in_the_audit_entry(seeded: str, veuctl: Veuctl) -> None:
    rc, out, err = veuctl("deadlines", "file", H2, "--on", "2025-12-31", "--early", "--json")
    assert rc == 0, err
    assert json.loads(out)["filed_on"] == "2025-12-31"
    assert _filings(seeded) == {H2: date(2025, 12, 31)}
    [entry] = _filing_entries(seeded)
    assert entry["early"] is True and entry["period_end"] == "2025-12-31"
    rc, out, _ = veuctl("deadlines", "list", "--as-of", "2026-01-10", "--json")
    assert next(d for d in json.loads(out) if d["key"] == H2)["status"] == "done"


def test_cli_the_current_periods_report_cannot_be_filed_today_without_early(seeded: str, veuctl: Veuctl) -> None:
    today = utc_today()
    half = 1 if today.month <= 6 else 2
    key = f"veu-report:a-uveu:{today.year}H{half}"
    end = date(today.year, 6, 30) if half == 1 else date(today.year, 12, 31)
    rc, _, err = veuctl("deadlines", "file", key, "--on", today.isoformat())
    assert rc == 2 and f"ends on {end}" in err, err
    assert _filings(seeded) == {}


def test_cli_a_deadline_with_no_period_is_still_filed_ahead_of_its_due_date(seeded: str, veuctl: Veuctl) -> None:
    # Supp. 10 ¶10's chip accounting is dated (each February 1 and August 1), not a period: ahead is on time.
    rc, _, err = veuctl("deadlines", "file", "chip-accounting:a-uveu:2025-08-01", "--on", "2025-07-20")
    assert rc == 0, err
    assert _filing_entries(seeded) == [{"filed_on": "2025-07-20", "reference": ""}]


def test_api_an_early_filing_is_a_422_naming_filed_on_and_early_records_it(seeded: str) -> None:
    from agent.api.app import create_app

    c = TestClient(create_app(seeded))
    r = c.post("/api/v1/deadlines/filings", json={"key": H1, "filed_on": "2025-06-30"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("filed_on: 2025-06-30 is before the end of the reporting period 2025 H1"), detail
    assert "ends on 2025-06-30" in detail and 'set "early": true' in detail and "--" not in detail, detail
    assert _filings(seeded) == {}
    r = c.post("/api/v1/deadlines/filings", json={"key": H1, "filed_on": "2025-06-30", "early": True})
    assert r.status_code == 201, r.text
    assert _filings(seeded) == {H1: date(2025, 6, 30)}
    [entry] = _filing_entries(seeded)
    assert entry["early"] is True and entry["period_end"] == "2025-06-30"
    # A future date is refused whatever "early" says: a filing is recorded once it is made.
    r = c.post("/api/v1/deadlines/filings", json={"key": H2, "filed_on": "2999-01-01", "early": True})
    assert r.status_code == 422 and r.json()["detail"].startswith("filed_on: 2999-01-01 is after today"), r.text


def test_dashboard_form_refuses_an_early_report_until_early_is_ticked(seeded: str) -> None:
    """The Deadlines page's form offers the override for a periodic report, and its refusal says to tick it."""
    from agent.api.app import create_app
    from agent.auth import create_token

    with session_scope(seeded) as s:
        _, secret = create_token(s, role="admin", name="filing-form")
    c = TestClient(create_app(seeded), base_url="https://testserver", follow_redirects=False)
    assert c.post("/login", data={"token": secret, "next": "/"}).status_code == 303
    same = {"Origin": "https://testserver"}
    page = c.get("/deadlines?as_of=2025-07-01")
    assert page.status_code == 200 and 'name="early"' in page.text, page.text[-2000:]
    form = {"key": H1, "filed_on": "2025-06-30", "as_of": "2025-07-01"}
    r = c.post("/deadlines/filings", data=form, headers=same)
    assert r.status_code == 422 and "2025 H1" in r.text and "early" in r.text and "--early" not in r.text, r.text
    assert _filings(seeded) == {}
    r = c.post("/deadlines/filings", data={**form, "early": "on"}, headers=same)
    assert r.status_code == 303, r.text
    assert _filings(seeded) == {H1: date(2025, 6, 30)}


# ------------------------------------------------------------ a chip accounting filed long before its reporting date

def test_cli_a_chip_accounting_filed_months_before_it_is_due_is_refused(seeded: str, veuctl: Veuctl) -> None:
    for on in ("2025-03-01", "2025-07-01"):  # 2025-07-02 is the first day of the 30-day window
        rc, _, err = veuctl("deadlines", "file", KEY, "--on", on)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: --on: {on} is before {KEY} is due"), err
        assert "2025-07-02" in err and "reporting date 2025-08-01" in err and "--early" in err, err
    assert _filings(seeded) == {} and _filing_entries(seeded) == []


def test_cli_a_chip_accounting_filed_inside_its_window_or_after_needs_no_early(seeded: str, veuctl: Veuctl) -> None:
    rc, _, err = veuctl("deadlines", "file", KEY, "--on", "2025-07-02")
    assert rc == 0, err
    assert _filing_entries(seeded) == [{"filed_on": "2025-07-02", "reference": ""}]


def test_cli_early_records_an_early_chip_accounting_and_says_so(seeded: str, veuctl: Veuctl) -> None:
    rc, _, err = veuctl("deadlines", "file", KEY, "--on", "2025-03-01", "--early")
    assert rc == 0, err
    assert _filings(seeded) == {KEY: date(2025, 3, 1)}
    [entry] = _filing_entries(seeded)
    assert entry["early"] is True and entry["due"] == "2025-08-01", entry


def test_api_an_early_chip_accounting_is_a_422_naming_filed_on(seeded: str) -> None:
    from agent.api.app import create_app

    c = TestClient(create_app(seeded))
    r = c.post("/api/v1/deadlines/filings", json={"key": KEY, "filed_on": "2025-03-01"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"filed_on: 2025-03-01 is before {KEY} is due"), detail
    assert "--" not in detail, detail
    r = c.post("/api/v1/deadlines/filings", json={"key": KEY, "filed_on": "2025-03-01", "early": True})
    assert r.status_code == 201, r.text
