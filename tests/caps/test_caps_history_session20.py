"""Caps evaluated over time: holdings that arrive, move and retire on different days, NVEU quarter boundaries,
Cambodia leaving D:5 on 2026-02-03, a subsidiary re-homed on a date, and the same figures from the core, the CLI
and the API for one date. Figures are checked by hand (H100 SXM: 15,832 TPP)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.cli import app as cli_app
from agent.cli._common import run_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, Site
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry
from policies.parties import PartyRef
from policies.paths import ItemLine, Proposal, ShipmentRef, find_paths
from tests.caps.conftest import seed_fleet

H100 = 15832


def veuctl(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, Any, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(cli_app)
    out = capsys.readouterr()
    return rc, json.loads(out.out) if rc == 0 and "--json" in args else out.out, out.err


def _history(url: str) -> None:
    """On top of the conftest fleet: Falcon's 50 chips at dxb from 2025-03-01 until retired at 08:00 on 2025-04-01,
    100 more arriving at 10:00 on 2025-03-31 (the last day of 2025 Q1); Aurora's 20 at Phnom Penh from 2025-06-01."""
    with session_scope(url) as s:
        party_svc.add_site(s, "pnh", "KH")
        s.flush()
        sites = {x.name: x.id for x in s.exec(select(Site)).all()}
        ids = {p.name: p.id for p in s.exec(select(Party)).all()}
        s.delete(s.exec(select(Holding).where(Holding.external_id == "h3")).one())  # Falcon's 100 from conftest
        for ext, site, n, owner, start, end in (
            ("f-old", "dxb", 50, "Falcon", datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, 8, tzinfo=UTC)),
            ("f-new", "dxb", 100, "Falcon", datetime(2025, 3, 31, 10, tzinfo=UTC), None),
            ("kh", "pnh", 20, "Aurora", datetime(2025, 6, 1, tzinfo=UTC), None),
        ):
            h = Holding(source="test", external_id=ext, site_id=sites[site], accelerator="h100-sxm", count=n,
                        owner_id=ids[owner], operator_id=ids[owner], first_seen=start, retired_at=end)
            s.add(h)
            s.flush()
            s.add(HoldingPeriod(holding_id=h.id, site_id=sites[site], accelerator="h100-sxm", count=n,  # type: ignore[arg-type]
                                owner_id=ids[owner], operator_id=ids[owner], valid_from=start, valid_to=end))


@pytest.fixture()
def store(db_url: str) -> str:
    seed_fleet(db_url)
    _history(db_url)
    return db_url


@pytest.fixture()
def client(store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("VEU_AUTH", "none")
    with TestClient(create_app_for(store)) as c:
        yield c


def create_app_for(url: str) -> Any:
    from agent.api.app import create_app

    return create_app(url)


def _nveu(url: str, on: date) -> tuple[int, int | None]:
    with session_scope(url) as s:
        cap = next(c for c in svc.caps_for(s, registry(), "falcon-ae", on) if c.id == "nveu.installed_base.AE")
    return int(cap.numerator), None if cap.limit is None else int(cap.limit)


def test_a_chip_counts_from_the_day_it_arrives_and_not_on_the_day_it_retires_across_a_quarter_boundary(
    store: str,
) -> None:
    # 2025-03-30: the 50 only. 2025-03-31 (last day of Q1): 50 + 100 arrived that day, against Q1's 633M.
    # 2025-04-01 (first of Q2): the 50 retired at 08:00 no longer count; Q2's 949.5M applies.
    assert _nveu(store, date(2025, 2, 28)) == (0, 633_000_000)
    assert _nveu(store, date(2025, 3, 30)) == (50 * H100, 633_000_000)
    assert _nveu(store, date(2025, 3, 31)) == (150 * H100, 633_000_000)
    assert _nveu(store, date(2025, 4, 1)) == (100 * H100, 949_500_000)
    # Year end and the end of Table 1: each quarter's cumulative figure, none after 2027.
    assert _nveu(store, date(2025, 12, 31)) == (100 * H100, 1_582_500_000)
    assert _nveu(store, date(2026, 1, 1)) == (100 * H100, 1_899_000_000)
    assert _nveu(store, date(2027, 12, 31)) == (100 * H100, 5_064_000_000)
    assert _nveu(store, date(2028, 1, 1)) == (100 * H100, None)


def test_the_explanation_series_whatif_and_overview_count_the_same_holdings_on_each_day(store: str) -> None:
    packs = registry()
    for on, want in ((date(2025, 3, 31), 150), (date(2025, 4, 1), 100)):
        with session_scope(store) as s:
            ex = svc.explain(s, packs, "falcon-ae", "nveu.installed_base.AE", on, 100, 0)
            assert ex["numerator_tpp"] == want * H100
            assert sum(h["tpp"] for h in ex["holdings"]["items"]) == want * H100
            ov = next(a for a in svc.overview(s, packs, on)["authorizations"] if a["name"] == "falcon-ae")
            assert ov["caps"][0]["numerator_tpp"] == want * H100
            ae = next(c for c in svc.overview(s, packs, on)["installed"]["countries"] if c["country"] == "AE")
            assert ae["count"] == want + 30  # Aurora EU's 30 at dxb too
            series = svc.installed_series(s, packs, [on])[0]
            assert series["by_tier"]["2"] == (want + 30) * H100
            # A what-if retiring everything held that day: the most it may retire is what was installed then.
            res = svc.whatif(s, packs, "falcon-ae", op="retire", n=want, chip_name="h100-sxm", site="dxb", as_of=on)
            cap = res["caps"][0]
            assert cap["before"]["numerator_tpp"] == want * H100 and cap["after"]["numerator_tpp"] == 0


def test_cli_api_and_core_give_the_same_figures_for_a_past_date(
    store: str, client: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    packs = registry()
    for name, on in (("falcon-ae", "2025-03-31"), ("aurora", "2026-02-02"), ("aurora", "2026-02-03")):
        with session_scope(store) as s:
            core = svc.caps_report(svc.caps_for(s, packs, name, date.fromisoformat(on)), date.fromisoformat(on))
        rc, cli, _ = veuctl(["caps", "show", name, "--as-of", on, "--json"], capsys, monkeypatch)
        api = client.get(f"/api/v1/caps/{name}", params={"as_of": on}).json()
        ov = next(a for a in client.get("/api/v1/caps", params={"as_of": on}).json()["authorizations"]
                  if a["name"] == name)
        assert rc == 0

        def figures(rep: dict[str, Any]) -> list[tuple[Any, ...]]:
            return [(c["id"], c["numerator_tpp"], c["denominator_tpp"], c["limit"], c["ok"]) for c in rep["caps"]]

        assert figures(cli) == figures(api) == figures(ov) == figures(core), (name, on)


def test_cambodia_leaving_d5_on_2026_02_03_changes_the_caps_that_day(store: str) -> None:
    packs = registry()
    with session_scope(store) as s:
        before = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2026, 2, 2))}
        after = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2026, 2, 3))}
    total = (900 + 30 + 70 + 20) * H100  # Aurora and Aurora EU own 1,020 chips
    # In D:5 until 2026-02-02: the 20 chips at Phnom Penh are in no permitted location (limit 0).
    ex = before["uveu.excluded_locations.owned"]
    assert (ex.numerator, ex.limit, ex.ok) == (20 * H100, 0, False)
    assert before["uveu.outside_tier1.owned"].numerator == (30 + 20) * H100
    assert before["uveu.outside_tier1.owned"].denominator == total
    # From 2026-02-03 Cambodia is Tier 2: nothing excluded; 20/1020 = 1.96% in KH, within 7%.
    assert after["uveu.excluded_locations.owned"].numerator == 0 and after["uveu.excluded_locations.owned"].ok
    kh = after["uveu.single_country.KH.owned"]
    assert (kh.numerator, kh.denominator, kh.ok) == (20 * H100, total, True)


def test_a_subsidiary_re_homed_on_a_date_leaves_the_uveu_group_that_day(store: str) -> None:
    packs = registry()
    with session_scope(store) as s:
        party_svc.add_party(s, "Aurora EU", None, parent="Lumen", reassign=True, effective=date(2025, 6, 1))
    with session_scope(store) as s:
        may = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2025, 5, 31))}
        june = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2025, 6, 1))}
    # 31 May: Aurora + Aurora EU own 900 + 30 + 70; 30 of them in the UAE (3%).
    assert may["uveu.outside_tier1.owned"].denominator == 1000 * H100
    assert may["uveu.single_country.AE.owned"].numerator == 30 * H100
    # 1 June: Aurora EU belongs to Lumen; Aurora owns the 900 in the US and, from that day, the 20 in Cambodia.
    assert june["uveu.outside_tier1.owned"].denominator == 920 * H100
    assert "uveu.single_country.AE.owned" not in june
    assert june["uveu.excluded_locations.owned"].numerator == 20 * H100  # Cambodia in D:5 in 2025


def test_caps_show_without_a_name_on_a_day_with_no_allocation_figures_says_why_and_where_the_caps_are(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A previous pass saw `veuctl caps show` print an empty table: the Tier 2 and LPP allocations come from the
    shipments ledger, and with no shipment counted on that date there is no row; the table said nothing of it."""
    seed_fleet(db_url)
    rc, out, _ = veuctl(["caps", "show"], capsys, monkeypatch)
    assert rc == 0
    assert "no Tier 2 country allocation or LPP figure" in out
    assert "veuctl shipments add" in out and "veuctl caps show NAME" in out
    assert "aurora" in out and "falcon-ae" in out
    rc, data, _ = veuctl(["caps", "show", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["caps"] == [] and "no Tier 2 country allocation or LPP figure" in data["note"]
    # A licence shipment to a Tier 2 destination is a row from its date on, and before it the note says why not.
    packs = registry()
    with session_scope(db_url) as s:
        svc.add_shipment(s, packs, day="2025-03-01", consignee="Lumen", destination="SG", chip_name="h100",
                         count=1000, via="licence", reference="D1")
    rc, data, _ = veuctl(["caps", "show", "--as-of", "2025-03-01", "--json"], capsys, monkeypatch)
    assert [c["id"] for c in data["caps"]] == ["tier2.country_allocation.SG"] and "note" not in data
    assert data["caps"][0]["numerator_tpp"] == 1000 * H100
    rc, out, _ = veuctl(["caps", "show", "--as-of", "2025-02-28"], capsys, monkeypatch)
    assert rc == 0 and "no Tier 2 country allocation or LPP figure on 2025-02-28" in out
    # The flag that only an authorization's caps read is refused without one, naming it.
    rc, _, err = veuctl(["caps", "show", "--no-reservations"], capsys, monkeypatch)
    assert rc == 2 and "--no-reservations" in err and "NAME" in err


def test_the_path_finders_country_allocation_counts_licences_dated_after_a_back_dated_proposal(
    packs: PackRegistry,
) -> None:
    """§ 742.6(b)(10)(iii)(B)(1): one allocation "for the period from 2025 to 2027", cumulative. A licence already
    shipped in 2026 has used it whatever day in the period a proposal is dated (as the LPP limit counts the whole
    calendar year's shipments)."""
    parties = {"Gulf": PartyRef("Gulf", "AE", None), "Other": PartyRef("Other", "AE", None)}
    ships = [ShipmentRef(date(2026, 5, 20), "Other", "AE", 789_000_000, "LICENCE")]
    items = (ItemLine("H100 SXM", 64, H100, "3A090.a"),)
    rep = find_paths(packs, parties, Proposal("export", items, "Gulf", "AE", date(2025, 6, 1)), (), ships)
    lic = rep.path("LICENCE")
    assert lic.figures["used_tpp"] == 789_000_000
    assert not lic.open and lic.presumption == "denial"
    # A licence after the period (none is loaded for 2028) is not the 2025-2027 allocation's.
    late = [*ships, ShipmentRef(date(2028, 2, 1), "Other", "AE", 500_000_000, "LICENCE")]
    rep = find_paths(packs, parties, Proposal("export", (ItemLine("H100 SXM", 60, H100, "3A090.a"),), "Gulf", "AE",
                                              date(2025, 6, 1)), (), late)
    lic = rep.path("LICENCE")
    assert lic.figures["used_tpp"] == 789_000_000 and lic.open
