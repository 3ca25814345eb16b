"""Session 22g QA of the register import: chips moving between sites, values the store cannot hold, failed runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from agent.collectors.csv_import import CsvCollector, CsvConfig, RegisterError
from agent.inventory import import_register, sync
from agent.parties import add_party, add_site
from agent.store import session_scope
from agent.store.tables.core import Holding, Site

HEADER = "site,accelerator,count,owner,operator,serial\n"


def _seed(url: str) -> str:
    with session_scope(url) as s:
        add_party(s, "Acme Cloud", "US")
        add_party(s, "Acme Ops", "IE")
        add_site(s, "Dublin DC1", "IE")
        add_site(s, "Frankfurt DC1", "DE")
    return url


@pytest.fixture()
def two(db_url: str) -> str:
    return _seed(db_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest) -> Iterator[str]:
    yield _seed(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def _write(tmp_path: Path, body: str, name: str = "register.csv") -> Path:
    p = tmp_path / name
    p.write_text(body, encoding="utf-8", newline="")
    return p


def _where(url: str) -> dict[str, str]:
    with session_scope(url) as s:
        rows = s.exec(select(Holding, Site.name).join(Site, Site.id == Holding.site_id)
                      .where(Holding.retired_at == None)).all()  # noqa: E711
        return {h.external_id: name for h, name in rows}


def test_serialised_chips_moved_to_another_country_are_moved_not_refused_as_retired(two: str, tmp_path: Path) -> None:
    # Every chip at Dublin moved to Frankfurt: none is retired, so the import is no "emptied site" to confirm.
    rows = "".join(f"{{site}},H100 SXM,1,Acme Cloud,Acme Ops,S{i}\n" for i in range(3))
    import_register(_write(tmp_path, HEADER + rows.format(site="Dublin DC1")), two)
    summary = import_register(_write(tmp_path, HEADER + rows.format(site="Frankfurt DC1")), two)
    assert summary.status == "ok"
    assert summary.as_dict()["retired"] == 0
    assert _where(two) == {f"serial:S{i}": "Frankfurt DC1" for i in range(3)}


def test_a_scheduled_read_of_chips_moved_to_another_site_is_complete(two: str, tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,S1\n")
    import_register(path, two)
    _write(tmp_path, HEADER + "Frankfurt DC1,H100 SXM,1,Acme Cloud,Acme Ops,S1\n")
    summary = sync(CsvCollector(CsvConfig(files=[str(path)])), two)
    assert summary.status == "ok", summary.as_dict()
    assert _where(two) == {"serial:S1": "Frankfurt DC1"}


def test_a_site_emptied_of_unserialised_lines_is_still_refused_unless_confirmed(two: str, tmp_path: Path) -> None:
    # The chips that do move do not hide the ones that would be retired.
    import_register(_write(tmp_path, HEADER + "Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,S1\n"
                                     "Dublin DC1,H100 SXM,4,Acme Cloud,Acme Ops,\n"), two)
    with pytest.raises(Exception, match=r"Dublin DC1 \(4 chips\).*--retire-absent-sites"):
        import_register(_write(tmp_path, HEADER + "Frankfurt DC1,H100 SXM,1,Acme Cloud,Acme Ops,S1\n"), two)


@pytest.mark.parametrize("value", ["S\x001", "S\x1b1", "S\x7f1"], ids=["NUL", "ESC", "DEL"])
def test_a_control_character_in_a_value_is_named_by_row_and_field_not_a_database_error(
    any_store: str, tmp_path: Path, value: str
) -> None:
    body = HEADER + "Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,S0\n" + \
        f"Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,{value}\n"
    with pytest.raises(RegisterError) as exc:
        import_register(_write(tmp_path, body), any_store)
    assert "row 3, field serial:" in str(exc.value) and f"U+{ord(value[1]):04X}" in str(exc.value)
    assert _where(any_store) == {}


def test_a_serial_longer_than_the_store_holds_is_named_by_row_and_field(any_store: str, tmp_path: Path) -> None:
    body = HEADER + "Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops," + "S" * 250 + "\n"
    with pytest.raises(RegisterError, match=r"row 2, field serial: .*250 characters.*at most 200"):
        import_register(_write(tmp_path, body), any_store)
    assert _where(any_store) == {}


def test_an_import_whose_run_fails_is_an_error_not_a_quiet_success(
    two: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Something the validation cannot foresee (the database refusing a write) failed the run: the import said
    # nothing, returned status "failed" and the CLI exited 0.
    import agent.inventory as inventory

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(inventory, "apply_scope", boom)
    with pytest.raises(Exception, match="disk full"):
        import_register(_write(tmp_path, HEADER + "Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,S1\n"), two)


def test_the_cli_exits_non_zero_when_the_import_run_fails(
    two: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    import agent.inventory as inventory
    from agent.cli import app
    from agent.cli._common import run_app

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(inventory, "apply_scope", boom)
    path = _write(tmp_path, HEADER + "Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,S1\n")
    monkeypatch.setattr(sys, "argv", ["veuctl", "inventory", "import", str(path), "--db", two])
    rc = run_app(app)
    err = capsys.readouterr().err
    assert rc != 0
    assert "disk full" in err and "nothing was imported" in err


def test_an_unserialised_line_whose_key_the_store_cannot_hold_is_named(any_store: str, tmp_path: Path) -> None:
    site, owner = "Dublin " + "D" * 150, "Acme " + "C" * 150
    with session_scope(any_store) as s:
        add_site(s, site, "IE")
        add_party(s, owner, "US")
    body = HEADER + f"{site},H100 SXM,4,{owner},Acme Ops,\n"
    with pytest.raises(RegisterError, match=r"row 2: .*key \d+ characters.*give the chips serials"):
        import_register(_write(tmp_path, body), any_store)
    assert _where(any_store) == {}


def test_the_first_control_character_of_a_value_is_the_one_named(two: str, tmp_path: Path) -> None:
    body = HEADER + "Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,fra\x1b-1\x00\n"
    with pytest.raises(RegisterError) as exc:
        import_register(_write(tmp_path, body), two)
    assert "U+001B" in str(exc.value) and "U+0000" not in str(exc.value)


def test_control_characters_are_named_in_column_order(two: str, tmp_path: Path) -> None:
    body = HEADER + "Dublin\x1bDC1,H100 SXM,1,Acme\x00Cloud,Acme Ops,S9\n"
    with pytest.raises(RegisterError) as exc:
        import_register(_write(tmp_path, body), two)
    text = str(exc.value)
    assert text.index("field site") < text.index("field owner"), text
