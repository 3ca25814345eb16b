"""Asset-register import: any alias accepted, every bad row named by row and field, nothing half-imported."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from agent.collectors.csv_import import RegisterError
from agent.inventory import import_register
from agent.kb import catalog
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding

HEADER = "site,accelerator,count,owner,operator,serial\n"


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _write(tmp_path: Path, body: str, name: str = "register.csv") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


def _rows(url: str) -> list[Holding]:
    with session_scope(url) as s:
        return list(s.exec(select(Holding)))


def test_register_rows_with_any_alias_become_holdings(dc: str, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        HEADER
        + "Dublin DC1,NVIDIA H100 80GB HBM3,1,Acme Cloud,Acme Ops,SN-1\n"
        + "Dublin DC1,nvidia-h100-80gb,1,Acme Cloud,Acme Ops,SN-2\n"
        + "Dublin DC1,A100-SXM4-40GB,4,Acme Cloud,Acme Ops,\n"
        + "Dublin DC1,nvidia-tesla-a100,2,Acme Cloud,Acme Ops,\n",
    )
    summary = import_register(f, dc)
    assert summary.status == "ok"
    rows = {h.external_id: h for h in _rows(dc)}
    h100 = catalog().resolve("h100").accelerator.id
    a100 = catalog().resolve("A100-SXM4-40GB").accelerator.id
    assert (rows["serial:SN-1"].accelerator, rows["serial:SN-1"].serial) == (h100, "SN-1")
    assert rows["serial:SN-2"].accelerator == h100
    unserialised = [h for h in rows.values() if not h.serial]
    assert [(h.accelerator, h.count) for h in unserialised] == [(a100, 6.0)]  # lines summed per site/chip/parties


def test_every_bad_row_is_named_by_row_and_field_and_nothing_is_written(dc: str, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        HEADER
        + "Dublin DC1,NVIDIA H100 80GB HBM3,1,Acme Cloud,Acme Ops,SN-1\n"
        + "Nowhere,NVIDIA H100 80GB HBM3,1,Acme Cloud,Acme Ops,SN-2\n"
        + "Dublin DC1,Flux Capacitor 9000,1,Acme Cloud,Acme Ops,SN-3\n"
        + "Dublin DC1,h100,-2,Acme Cloud,Acme Ops,\n"
        + "Dublin DC1,h100,1,Nobody Inc,Acme Ops,SN-1\n",
    )
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    problems = exc.value.problems
    assert any(p.startswith("row 3, field site") for p in problems)
    assert any(p.startswith("row 4, field accelerator") for p in problems)
    assert any(p.startswith("row 5, field count") for p in problems)
    assert any(p.startswith("row 6, field owner") for p in problems)
    assert any(p.startswith("row 6, field serial") and "row 2" in p for p in problems)
    assert _rows(dc) == []


def test_wrong_header_is_refused(dc: str, tmp_path: Path) -> None:
    f = _write(tmp_path, "site,gpu,count\nDublin DC1,h100,1\n")
    with pytest.raises(Exception, match="header must be site,accelerator,count,owner,operator"):
        import_register(f, dc)


def test_json_register_and_reimport_retires_rows_no_longer_listed(dc: str, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        '[{"site": "Dublin DC1", "accelerator": "h100", "count": 1, "owner": "Acme Cloud",'
        ' "operator": "Acme Ops", "serial": "SN-1"},'
        ' {"site": "Dublin DC1", "accelerator": "h100", "count": 1, "owner": "Acme Cloud",'
        ' "operator": "Acme Ops", "serial": "SN-2"}]',
        "assets.json",
    )
    import_register(f, dc)
    f.write_text(
        '[{"site": "Dublin DC1", "accelerator": "h100", "count": 1, "owner": "Acme Cloud",'
        ' "operator": "Acme Ops", "serial": "SN-1"}]'
    )
    import_register(f, dc)
    rows = {h.external_id: h for h in _rows(dc)}
    assert rows["serial:SN-2"].retired_at is not None and rows["serial:SN-1"].retired_at is None


def test_register_history_on_postgresql_rebuilds_the_installed_base_for_a_past_instant(
    pg_url: str,
    tmp_path: Path,
    packs: object,
) -> None:
    from datetime import timedelta

    from agent.inventory import installed_base
    from agent.parties import add_party
    from agent.store.tables.core import utcnow

    with session_scope(pg_url) as s:
        add_party(s, "Acme Cloud", "US")
        add_party(s, "Acme Ops", "IE")
        add_site(s, "Dublin DC1", "IE")
    f = _write(
        tmp_path, HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\nDublin DC1,h100,1,Acme Cloud,Acme Ops,SN-2\n"
    )
    import_register(f, pg_url)
    between = utcnow()
    f.write_text(HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n")
    import_register(f, pg_url)
    with session_scope(pg_url) as s:
        then = installed_base(s, packs, between)  # type: ignore[arg-type]
        now = installed_base(s, packs, utcnow() + timedelta(seconds=1))  # type: ignore[arg-type]
    assert then["totals"]["count"] == 2 and now["totals"]["count"] == 1
    assert len(_rows(pg_url)) == 2
