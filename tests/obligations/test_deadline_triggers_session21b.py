"""Deadlines dated from the event that triggers them: a ¶11 notice from the day a requirement was recorded as not
met (not the entry's last edit), a ¶16 theft/loss report never filed before the incident was discovered.

Rule text (/work/shared/reference/uveu-nveu-primary.md §3d):
- Supp. 10 ¶11: "The VEU must further notify BIS if, at any time, any requirements have not been met" (no period
  is given: the product dates the notice the day the register records the paragraph non-compliant).
- Supp. 10 ¶16: "reporting any theft, loss, or tampering incidents to BIS within 30 days" (of discovery).
Both duties came with the AI Diffusion IFR, compliance from 2025-05-15 (veu-notices, supp10-p11).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import obligations as svc
from agent.auth import create_token
from agent.packs import registry
from agent.parties import add_party, add_site
from agent.store import session_scope
from agent.store.tables.obligations import ObligationFiling

Veuctl = Callable[..., tuple[int, str, str]]
UNMET = "unmet-requirement:site:sin-dc1:p14"


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


def _seed(url: str) -> str:
    with session_scope(url) as s:
        add_party(s, "Aurora", "US")
        add_site(s, "sin-dc1", country="SG")
        svc.add_authorization(s, registry(), "a-uveu", date(2025, 8, 1), "uveu", "Aurora", locations=["US", "SG"])
    return url


@pytest.fixture()
def seeded(db_url: str) -> str:
    return _seed(db_url)


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[date], None]]:
    """Set the day the store's writes (register entries and their audit entries) are stamped with."""

    def at(day: date) -> None:
        now = datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)
        monkeypatch.setattr("agent.obligations.utcnow", lambda: now)
        monkeypatch.setattr("agent.audit.utcnow", lambda: now)

    yield at


def _client(url: str) -> TestClient:
    from agent.api.app import create_app

    with session_scope(url) as s:
        _, secret = create_token(s, role="admin", name="session21b")
    c = TestClient(create_app(url), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {secret}"
    return c


def _deadline(url: str, key: str, on: date) -> dict[str, Any] | None:
    with session_scope(url) as s:
        return next((d.to_dict() for d in svc.deadline_list(s, registry(), on) if d.key == key), None)


def _set(url: str, **kw: Any) -> None:
    with session_scope(url) as s:
        svc.set_entry(s, "site", "sin-dc1", 14, **kw)


# ------------------------------------------------------------------ Supp. 10 ¶11: "if, at any time, ..."


def test_editing_a_non_compliant_entry_does_not_move_its_para11_notice(
        seeded: str, clock: Callable[[date], None]) -> None:
    clock(date(2026, 6, 1))
    _set(seeded, status="non-compliant")
    assert _deadline(seeded, UNMET, date(2026, 6, 1))["due"] == "2026-06-01"  # type: ignore[index]
    # Months later the owner and the notes change; the requirement has been unmet since June 1 all along.
    clock(date(2026, 11, 1))
    _set(seeded, owner="secops", notes="badge readers still missing")
    d = _deadline(seeded, UNMET, date(2026, 12, 5))
    assert d is not None and d["due"] == "2026-06-01" and d["status"] == "overdue", d
    # ... and a past as-of date inside the episode still shows the notice it owed then.
    past = _deadline(seeded, UNMET, date(2026, 7, 1))
    assert past is not None and past["due"] == "2026-06-01" and past["status"] == "overdue", past
    assert _deadline(seeded, UNMET, date(2026, 5, 31)) is None  # not yet unmet on that date


def test_para11_notice_keeps_its_day_on_postgresql(pg_url: str, clock: Callable[[date], None]) -> None:
    _seed(pg_url)
    clock(date(2026, 6, 1))
    _set(pg_url, status="non-compliant")
    clock(date(2026, 11, 1))
    _set(pg_url, notes="still open")
    d = _deadline(pg_url, UNMET, date(2026, 12, 5))
    assert d is not None and d["due"] == "2026-06-01" and d["status"] == "overdue", d


def test_para11_notice_is_dated_from_the_latest_time_the_requirement_became_unmet(
        seeded: str, clock: Callable[[date], None]) -> None:
    clock(date(2026, 3, 2))
    _set(seeded, status="non-compliant")
    clock(date(2026, 4, 10))
    _set(seeded, status="compliant")
    clock(date(2026, 9, 15))
    _set(seeded, status="non-compliant")
    clock(date(2026, 10, 20))
    _set(seeded, review_date=date(2027, 1, 31))
    d = _deadline(seeded, UNMET, date(2026, 12, 5))
    assert d is not None and d["due"] == "2026-09-15" and d["status"] == "overdue", d


def test_para11_notice_agrees_between_cli_and_api(
        seeded: str, clock: Callable[[date], None], veuctl: Veuctl) -> None:
    clock(date(2026, 6, 1))
    _set(seeded, status="non-compliant")
    clock(date(2026, 11, 1))
    _set(seeded, notes="still open")
    rc, out, err = veuctl("deadlines", "list", "--as-of", "2026-12-05", "--json")
    assert rc == 0, err
    cli = next(d for d in json.loads(out) if d["key"] == UNMET)
    r = _client(seeded).get("/api/v1/deadlines", params={"as_of": "2026-12-05"})
    assert r.status_code == 200, r.text
    api = next(d for d in r.json() if d["key"] == UNMET)
    assert cli == api and cli["due"] == "2026-06-01", (cli, api)


# ------------------------------------------------------------------ Supp. 10 ¶16: "within 30 days"


def test_a_theft_report_dated_before_the_incident_was_discovered_is_refused(seeded: str, veuctl: Veuctl) -> None:
    rc, _, err = veuctl("deadlines", "event", "inc-2", "--kind", "incident", "--on", "2026-11-20", "--site",
                        "sin-dc1", "--description", "tamper")
    assert rc == 0, err
    rc, _, err = veuctl("deadlines", "file", "theft-loss:inc-2", "--on", "2026-10-01")
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: --on: 2026-10-01 is before incident inc-2 was discovered (2026-11-20)"), err
    with session_scope(seeded) as s:
        assert s.exec(select(ObligationFiling)).all() == []
    # The day of discovery and the last day of the 30 (2026-12-20) are both on time.
    rc, _, err = veuctl("deadlines", "file", "theft-loss:inc-2", "--on", "2026-11-20")
    assert rc == 0, err
    d = _deadline(seeded, "theft-loss:inc-2", date(2026, 12, 5))
    assert d is not None and d["due"] == "2026-12-20" and d["status"] == "done" and d["late"] is False, d


def test_api_a_theft_report_before_discovery_is_a_422_naming_filed_on(seeded: str, veuctl: Veuctl) -> None:
    veuctl("deadlines", "event", "inc-3", "--kind", "incident", "--on", "2026-11-20", "--site", "sin-dc1")
    r = _client(seeded).post("/api/v1/deadlines/filings",
                             json={"key": "theft-loss:inc-3", "filed_on": "2026-11-19"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("filed_on: 2026-11-19 is before incident inc-3 was discovered"), detail
    assert "--" not in detail, detail  # the CLI's options and command read as the API's fields and route
