"""`veuctl inventory show` on a large fleet: the table shows the first rows, not every one.

Drawing ~90k table rows took about a minute (most of `inventory show`'s time) for an operator who wanted the summary
and the first rows. The table now shows at most 200 holdings (``--limit N`` for another number, ``--limit 0`` for all,
``--offset N`` to skip) with a line saying how many more there are and how to see them; the totals are always the
whole installed base. ``--json`` stays complete, in the same shape, unless ``--limit``/``--offset`` is given.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from agent.parties import add_party, add_site
from agent.store import session_scope
from agent.store.tables.core import Holding, Party

T0 = datetime(2025, 1, 1, tzinfo=UTC)
N = 300


@pytest.fixture()
def fleet(db_url: str) -> str:
    """300 holdings: one H100 row at each of sites s000..s299 (one table row each)."""
    with session_scope(db_url) as s:
        add_party(s, "Aurora", "US")
        sites = [add_site(s, f"s{i:03d}", "US") for i in range(N)]
        s.flush()
        owner = s.exec(select(Party).where(Party.name == "Aurora")).one().id
        for i, st in enumerate(sites):
            s.add(Holding(source="test", external_id=f"h{i}", site_id=st.id or 0, accelerator="h100-sxm",
                          count=8, owner_id=owner, operator_id=owner, first_seen=T0))
    return db_url


def _veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    code = run_app(app)
    out = capsys.readouterr()
    return code, out.out, out.err


def _sites_in(out: str) -> list[str]:
    return [w for line in out.splitlines() for w in line.replace("│", " ").split() if w[:1] == "s" and w[1:].isdigit()]


def test_the_table_shows_200_rows_and_says_how_many_more_and_how_to_see_them(
    fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--as-of", "2025-06-30")
    assert code == 0, err
    assert _sites_in(out) == [f"s{i:03d}" for i in range(200)]
    assert "100 more holdings not shown" in err and "--limit 0" in err and "--json" in err and "--offset 200" in err
    # The totals are the whole installed base, not the rows shown.
    assert f"total: {N * 8} chips" in err


def test_limit_0_shows_every_row_and_limit_offset_page(
    fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--limit", "0")
    assert code == 0, err
    assert _sites_in(out) == [f"s{i:03d}" for i in range(N)]
    assert "not shown" not in err
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--limit", "10", "--offset", "295")
    assert code == 0, err
    assert _sites_in(out) == [f"s{i:03d}" for i in range(295, N)]
    assert "not shown" not in err and f"total: {N * 8} chips" in err
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--limit", "50", "--offset", "100")
    assert code == 0, err
    assert _sites_in(out) == [f"s{i:03d}" for i in range(100, 150)]
    assert "150 more holdings not shown" in err and "--offset 150" in err


def test_json_keeps_every_row_in_the_same_shape_unless_limit_is_given(
    fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"as_of", "at", "holdings", "totals"}
    assert len(data["holdings"]) == N and data["totals"]["count"] == N * 8
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--json", "--limit", "0")
    assert code == 0, err
    assert json.loads(out) == data | {"at": json.loads(out)["at"]}
    # Asked for explicitly, --limit/--offset page the JSON too; the totals stay whole, holdings_total says how many.
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--json", "--limit", "5", "--offset", "10")
    assert code == 0, err
    page = json.loads(out)
    assert [h["site"] for h in page["holdings"]] == [f"s{i:03d}" for i in range(10, 15)]
    assert page["holdings_total"] == N and page["totals"]["count"] == N * 8


@pytest.mark.parametrize(("args", "name"), [
    (["--limit", "-1"], "--limit"), (["--limit", "x"], "--limit"), (["--offset", "-5"], "--offset"),
    (["--offset", "x"], "--offset"), (["--limit", "9" * 25], "--limit"),
])
def test_bad_limit_or_offset_is_refused_naming_the_option(
    fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], name: str,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", *args)
    assert code == 2 and out == "", err
    assert err.startswith("error: ") and err.count("\n") == 1 and name in err, err


def test_an_offset_past_the_last_holding_says_so(
    fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--offset", "10000")
    assert code == 0, err
    assert _sites_in(out) == []
    assert f"--offset 10,000 is past the last holding ({N} in all)" in err


def test_json_writes_chip_counts_as_the_exports_and_the_api_do(
    fleet: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert all(type(h["count"]) is int for h in data["holdings"])
    assert type(data["totals"]["count"]) is int
    assert all(type(b["count"]) is int for b in data["totals"]["by_country"].values())
