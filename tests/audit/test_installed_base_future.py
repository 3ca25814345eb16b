"""An installed-base export whose --to is after today: refused naming --to (CLI exit 2, API 422), nothing written.

Its positions are those in force on --to; a later day's are not known, and the signed export would have stated
today's holdings and reservations as that day's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import select

from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import utc_today
from policies.packs import PackRegistry
from tests.audit.seed import seed


def _exports_recorded(url: str) -> int:
    with session_scope(url) as s:
        return len(s.exec(select(AuditEntry).where(AuditEntry.action == "export.create")).all())


def test_cli_installed_base_to_after_today_is_refused_naming_to(
        db_url: str, packs: PackRegistry, tmp_path: Path, veuctl) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url) as s:
        seed(s, packs)
    today = utc_today()
    tomorrow = (today + timedelta(days=1)).isoformat()
    rc, _, err = veuctl("export", "installed-base", "--from", "2026-01-01", "--to", tomorrow, "--out",
                        str(tmp_path / "x"), "--db", db_url)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: --to: {tomorrow} is after today ({today.isoformat()})"), err
    assert not (tmp_path / "x").exists() and _exports_recorded(db_url) == 0
    # A whole period in the future names --to too (the day whose positions it would state).
    rc, _, err = veuctl("export", "installed-base", "--from", "2099-01-01", "--to", "2099-06-30", "--out",
                        str(tmp_path / "x"), "--db", db_url)
    assert rc == 2 and err.startswith("error: --to: 2099-06-30 is after today"), err
    # Today is known (the positions in force now) and is exported.
    rc, _, err = veuctl("export", "installed-base", "--from", "2026-01-01", "--to", today.isoformat(), "--format",
                        "json", "--out", str(tmp_path / "x"), "--db", db_url)
    assert rc == 0, err
    assert _exports_recorded(db_url) == 1


def test_api_installed_base_to_after_today_is_a_422_naming_to(db_url: str, packs: PackRegistry) -> None:
    from agent.api.app import create_app

    with session_scope(db_url) as s:
        seed(s, packs)
    client = TestClient(create_app(db_url))
    tomorrow = (utc_today() + timedelta(days=1)).isoformat()
    r = client.get("/api/v1/exports/installed-base", params={"from": "2026-01-01", "to": tomorrow,
                                                             "format": ["json"]})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"to: {tomorrow} is after today") and "--" not in detail, detail
    assert _exports_recorded(db_url) == 0
    r = client.get("/api/v1/exports/installed-base", params={"from": "2026-01-01", "to": utc_today().isoformat(),
                                                             "format": ["json"]})
    assert r.status_code == 200, r.text


def test_cli_shipments_to_after_today_is_refused_naming_to_as_its_allocation_positions_are_that_days(
        db_url: str, packs: PackRegistry, tmp_path: Path, veuctl) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url) as s:
        seed(s, packs)
    today = utc_today()
    tomorrow = (today + timedelta(days=1)).isoformat()
    rc, _, err = veuctl("export", "shipments", "--from", "2026-01-01", "--to", tomorrow, "--out",
                        str(tmp_path / "x"), "--db", db_url)
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: --to: {tomorrow} is after today ({today.isoformat()}); the Tier 2 "), err
    assert not (tmp_path / "x").exists() and _exports_recorded(db_url) == 0
    rc, _, err = veuctl("export", "shipments", "--from", "2026-01-01", "--to", today.isoformat(), "--format",
                        "json", "--out", str(tmp_path / "x"), "--db", db_url)
    assert rc == 0, err
