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
from policies.errors import PolicyError

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


def test_bad_row_after_a_blank_line_is_named_by_its_spreadsheet_row(dc: str, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n\nDublin DC1,h100,x,Acme Cloud,Acme Ops,SN-2\n",
    )
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    assert exc.value.problems == ["row 4, field count: 'x' is not a positive number"]


def test_row_with_more_values_than_the_header_is_refused_not_truncated(dc: str, tmp_path: Path) -> None:
    # An unquoted comma in the serial shifts a value past the last column; it must not be dropped silently.
    f = _write(tmp_path, HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN,7\n")
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    assert len(exc.value.problems) == 1 and exc.value.problems[0].startswith("row 2: 7 values")
    assert _rows(dc) == []


def test_duplicate_header_column_is_refused(dc: str, tmp_path: Path) -> None:
    f = _write(tmp_path, "site,accelerator,count,owner,operator,site\nDublin DC1,h100,1,Acme Cloud,Acme Ops,X\n")
    with pytest.raises(PolicyError, match="duplicate site"):
        import_register(f, dc)
    assert _rows(dc) == []


def test_count_that_is_not_a_whole_number_of_chips_is_refused(dc: str, tmp_path: Path) -> None:
    f = _write(tmp_path, HEADER + "Dublin DC1,h100,2.5,Acme Cloud,Acme Ops,\n")
    with pytest.raises(RegisterError, match=r"row 2, field count: '2.5' is not a whole number"):
        import_register(f, dc)
    assert _rows(dc) == []


def test_a_header_only_register_does_not_retire_a_whole_site_unless_told_to(dc: str, tmp_path: Path) -> None:
    f = _write(tmp_path, HEADER + "Dublin DC1,h100,8,Acme Cloud,Acme Ops,\n")
    import_register(f, dc)
    f.write_text(HEADER)
    with pytest.raises(PolicyError, match=r"would retire every chip it holds at Dublin DC1 \(8 chips\).*"
                                          r"--retire-absent-sites"):
        import_register(f, dc)
    assert [h.retired_at for h in _rows(dc)] == [None]
    import_register(f, dc, retire_absent_sites=True)  # the site really is gone
    assert [h.retired_at is not None for h in _rows(dc)] == [True]


def test_a_scheduled_read_of_an_emptied_register_retires_nothing_until_the_operator_confirms(
    dc: str, tmp_path: Path,
) -> None:
    from agent.collectors.base import build
    from agent.inventory import sync

    with session_scope(dc) as s:
        add_site(s, "Frankfurt DC2", "DE")
    f = _write(tmp_path, HEADER + "Dublin DC1,h100,8,Acme Cloud,Acme Ops,\n"
                         "Frankfurt DC2,h100,1,Acme Cloud,Acme Ops,SN-9\n")
    assert sync(build("csv", {"files": [str(f)]}), dc).status == "ok"
    # The nightly export was cut short: Frankfurt's line is missing, Dublin's count changed.
    f.write_text(HEADER + "Dublin DC1,h100,6,Acme Cloud,Acme Ops,\n")
    run = sync(build("csv", {"files": [str(f)]}), dc)
    assert not run.scopes[0].complete
    assert "no longer lists Frankfurt DC2 (1 chips); nothing was retired" in (run.scopes[0].error or "")
    assert "--retire-absent-sites" in (run.scopes[0].error or "")
    live = {(h.external_id, h.count) for h in _rows(dc) if h.retired_at is None}
    assert live == {("line:Dublin DC1|" + catalog().resolve("h100").accelerator.id + "|Acme Cloud|Acme Ops", 6.0),
                    ("serial:SN-9", 1.0)}  # the change applied, the absent site kept
    # The operator confirms Frankfurt is gone, once; or opts in for scheduled reads.
    import_register(f, dc, retire_absent_sites=True)
    assert {h.external_id for h in _rows(dc) if h.retired_at is None} == {
        "line:Dublin DC1|" + catalog().resolve("h100").accelerator.id + "|Acme Cloud|Acme Ops"}
    f.write_text(HEADER)
    assert sync(build("csv", {"files": [str(f)], "retire_absent_sites": True}), dc).status == "ok"
    assert all(h.retired_at is not None for h in _rows(dc))


def test_another_sites_register_with_the_same_file_name_is_refused_and_imports_under_its_own_scope(
    dc: str, tmp_path: Path,
) -> None:
    with session_scope(dc) as s:
        add_site(s, "Frankfurt DC2", "DE")
    (tmp_path / "dublin").mkdir()
    (tmp_path / "frankfurt").mkdir()
    dublin = _write(tmp_path / "dublin", HEADER + "Dublin DC1,h100,8,Acme Cloud,Acme Ops,\n", "assets.csv")
    frankfurt = _write(tmp_path / "frankfurt", HEADER + "Frankfurt DC2,h100,4,Acme Cloud,Acme Ops,\n",
                       "assets.csv")
    import_register(dublin, dc)
    with pytest.raises(PolicyError, match=r"Dublin DC1.*--scope"):
        import_register(frankfurt, dc)
    import_register(frankfurt, dc, scope="register:frankfurt")
    live = {(h.scope, h.count) for h in _rows(dc) if h.retired_at is None}
    assert live == {("register:assets.csv", 8.0), ("register:frankfurt", 4.0)}


def test_two_configured_registers_with_one_file_name_are_a_config_error() -> None:
    from agent.collectors.csv_import import CsvConfig

    with pytest.raises(ValueError, match=r"two registers named assets\.csv"):
        CsvConfig.model_validate({"files": ["/dublin/assets.csv", "/frankfurt/assets.csv"]})


def test_a_line_another_register_holds_is_refused_not_moved_into_this_one(dc: str, tmp_path: Path) -> None:
    (tmp_path / "h1").mkdir()
    (tmp_path / "h2").mkdir()
    hall1 = _write(tmp_path / "h1", HEADER + "Dublin DC1,h100,100,Acme Cloud,Acme Ops,\n", "assets.csv")
    hall2 = _write(tmp_path / "h2", HEADER + "Dublin DC1,h100,50,Acme Cloud,Acme Ops,\n", "assets.csv")
    import_register(hall1, dc)
    with pytest.raises(PolicyError, match=r"already held by another register: Dublin DC1 / .* register:assets\.csv"):
        import_register(hall2, dc, scope="register:hall2")
    assert [(h.scope, h.count) for h in _rows(dc) if h.retired_at is None] == [("register:assets.csv", 100.0)]


def test_a_cloud_sites_region_is_stored_lower_case_as_the_collectors_look_it_up(store: str) -> None:
    from agent.store.tables.core import Site

    with session_scope(store) as s:
        add_site(s, "Taipei LZ", "TW", "aws", "AP-NORTHEAST-1-TPE-1 ")
    with session_scope(store) as s:
        assert s.exec(select(Site).where(Site.name == "Taipei LZ")).one().region == "ap-northeast-1-tpe-1"


def test_a_scheduled_read_of_a_register_saved_as_utf16_fails_its_scope_naming_the_file(dc: str, tmp_path: Path) -> None:
    from agent.collectors.base import build
    from agent.inventory import sync

    f = tmp_path / "assets.csv"
    f.write_bytes((HEADER + "Dublin DC1,h100,8,Acme Cloud,Acme Ops,\n").encode("utf-16"))
    run = sync(build("csv", {"files": [str(f)]}), dc)
    assert run.status != "ok" and str(f) in (run.scopes[0].error or "") and "not UTF-8" in (run.scopes[0].error or "")
    assert _rows(dc) == []  # nothing stored


def test_the_fix_a_register_error_suggests_runs_as_copied_whatever_the_name_holds(dc: str, tmp_path: Path) -> None:
    import re
    import shlex

    site, party = """O'Neil "North" DC""", "Unknown Holdings Ltd"
    quoted = '"' + site.replace('"', '""') + '"'  # a CSV field with quotes in it
    f = _write(tmp_path, HEADER + f"{quoted},h100,8,Acme Cloud,Acme Ops,\n" + f"Dublin DC1,h100,8,{party},Acme Ops,\n")
    with pytest.raises(PolicyError) as err:
        import_register(f, dc)
    commands = [shlex.split(c) for c in re.findall(r"`(veuctl [^`]*)`", str(err.value))]
    assert ["veuctl", "sites", "add", site, "--country", "CC"] in commands, str(err.value)
    assert ["veuctl", "parties", "add", party, "--hq", "CC"] in commands, str(err.value)
