"""Inventory filters that name nothing are errors, not empty answers; `inventory show --as-of D` reports D; an
asset register that is not UTF-8 is refused naming the file.

A misspelt filter (``source=bogus``, ``accelerator=nochip``, ``site=nowhere``) used to answer an empty list,
which reads as "nothing collected" / "no such chips". An unknown source or accelerator is a 422 (exit 2 in
``veuctl``) naming the parameter; an unknown site a 404, as ``installed-base`` answers. A source or accelerator
id the store holds stays a valid filter even when no collector or catalog entry has it (demo data, a chip the
catalog no longer lists).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from agent.store.tables.inventory import CollectorRun
from tests.caps.conftest import seed_fleet

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture()
def fleet(db_url: str) -> str:
    """seed_fleet (holdings of source ``test``, chip ``h100-sxm``), a retired holding of a chip the catalog lacks,
    and a collector run of a source that is no collector of this version."""
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        iad = s.exec(select(Site).where(Site.name == "iad")).one()
        s.add(Holding(source="demo", external_id="old-1", site_id=iad.id or 0, accelerator="retired-chip-x",
                      count=4, first_seen=T0, retired_at=datetime(2025, 2, 1, tzinfo=UTC)))
        s.add(CollectorRun(source="legacy", started_at=T0, host="h", pid=1, status="ok"))
    return db_url


@pytest.fixture()
def api(fleet: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from agent.api.app import create_app

    monkeypatch.setenv("VEU_AUTH", "none")
    with TestClient(create_app(fleet), raise_server_exceptions=False) as c:
        yield c


def _veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    code = run_app(app)
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(code: int, err: str, name: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert name in err, err


# (path, query, status, what the detail starts with)
UNKNOWN = [
    ("/api/v1/inventory/runs", {"source": "bogus"}, 422, "source: 'bogus' is not one of aws, csv, gcp, k8s, nvml"),
    ("/api/v1/inventory/holdings", {"source": "bogus"}, 422, "source: 'bogus'"),
    ("/api/v1/inventory/holdings", {"accelerator": "nochip"}, 422, "accelerator: 'nochip'"),
    ("/api/v1/inventory/holdings", {"site": "nowhere"}, 404, "site: 'nowhere' is not a registered site"),
    ("/api/v1/holdings", {"accelerator": "nochip"}, 422, "accelerator: 'nochip'"),
    ("/api/v1/holdings", {"country": "ZZ"}, 422, "country: 'ZZ'"),
    ("/api/v1/sites", {"country": "Atlantis"}, 422, "country: 'Atlantis'"),
]


@pytest.mark.parametrize(("path", "query", "status", "detail"), UNKNOWN, ids=[f"{u[0]} {u[1]}" for u in UNKNOWN])
def test_an_unknown_filter_value_is_an_error_naming_the_parameter_not_an_empty_page(
    api: TestClient, path: str, query: dict[str, str], status: int, detail: str,
) -> None:
    r = api.get(path, params=query)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(detail), r.text
    assert "--" not in r.json()["detail"]


def test_an_alias_is_not_silently_matched_nothing_the_error_names_the_catalog_id(api: TestClient) -> None:
    for path in ("/api/v1/inventory/holdings", "/api/v1/holdings"):
        r = api.get(path, params={"accelerator": "H100"})
        assert r.status_code == 422 and "did you mean 'h100-sxm'" in r.json()["detail"], r.text


def test_known_and_stored_filter_values_still_match(api: TestClient) -> None:
    def total(path: str, **q: str) -> int:
        r = api.get(path, params=q)
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    assert total("/api/v1/inventory/holdings", source="test") == 4  # a source the store holds
    assert total("/api/v1/inventory/holdings", source="aws") == 0  # a collector that has collected nothing
    assert total("/api/v1/inventory/holdings", accelerator="h100-sxm", site="dxb") == 2
    assert total("/api/v1/inventory/holdings", accelerator="a100-sxm4-80gb") == 0  # in the catalog, none held
    held = api.get("/api/v1/inventory/holdings", params={"accelerator": "retired-chip-x", "include_retired": True})
    assert [x["external_id"] for x in held.json()["items"]] == ["old-1"]  # held, though no catalog entry has it
    assert total("/api/v1/inventory/holdings", source="demo", include_retired="true") == 1
    assert total("/api/v1/inventory/holdings", source="", accelerator="", site="") == 4  # empty: every one
    assert [x["source"] for x in api.get("/api/v1/inventory/runs", params={"source": "legacy"}).json()] == ["legacy"]
    assert api.get("/api/v1/inventory/runs", params={"source": "nvml"}).json() == []
    assert total("/api/v1/holdings", accelerator="h100-sxm") == 4
    assert total("/api/v1/holdings", accelerator="") == 4
    assert total("/api/v1/holdings", country="Germany") == 1  # a country's name, as elsewhere
    assert [x["name"] for x in api.get("/api/v1/sites", params={"country": "ae"}).json()["items"]] == ["dxb"]


def test_veuctl_inventory_runs_with_an_unknown_source_exits_2_naming_it(
    fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "runs", "--source", "bogus")
    _one_line(code, err, "--source")
    assert "'bogus'" in err and "aws" in err and out == ""
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "runs", "--source", "legacy", "--json")
    assert code == 0, err
    assert [r["source"] for r in json.loads(out)] == ["legacy"]


def test_inventory_show_as_of_reports_the_date_asked_for(
    fleet: str, api: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--as-of", "2025-06-30", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["as_of"] == "2025-06-30"
    # The instant counted: the last of that UTC day (a change at 00:00 on 1 July is the next day's).
    assert data["at"] == "2025-06-30T23:59:59.999999+00:00"
    assert data["totals"]["count"] == 1100  # the chip retired in February is not counted
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--as-of", "2025-06-30")
    assert code == 0, err
    assert "Installed base as of 2025-06-30 (end of day, UTC)" in out and "2025-07-01" not in out
    # The API's installed base says the same.
    body = api.get("/api/v1/inventory/installed-base", params={"as_of": "2025-06-30"}).json()
    assert body["as_of"] == "2025-06-30" and body["at"] == "2025-06-30T23:59:59.999999+00:00"
    # Today: the date, and "now" (the instant counted is now, not the end of the day).
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--json")
    today = json.loads(out)
    assert code == 0 and today["as_of"] == datetime.fromisoformat(today["at"]).date().isoformat()
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show")
    assert code == 0 and f"Installed base as of {today['as_of']} (now, " in out


@pytest.mark.parametrize("content", [b"site,accelerator,count,owner,operator\n\xff\xfe\x00bad\n",
                                     "site,accelerator,count,owner,operator\n".encode("utf-16")])
def test_an_asset_register_that_is_not_utf8_is_refused_naming_the_file_and_nothing_is_stored(
    fleet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    content: bytes,
) -> None:
    def counts() -> tuple[int, int]:
        with session_scope(fleet) as s:
            return (s.exec(select(func.count()).select_from(Holding)).one(),
                    s.exec(select(func.count()).select_from(CollectorRun)).one())

    before = counts()
    f = tmp_path / "bin.csv"
    f.write_bytes(content)
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "import", str(f))
    _one_line(code, err, "FILE")
    assert str(f) in err and "not UTF-8" in err and out == ""
    assert counts() == before
