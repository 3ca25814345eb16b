"""Session 24 (F) on the what-if planner across dates: a plan fits only if it fits on its as-of date and on every
later date a loaded pack changes the authorization's caps (a cap lowered, a country moving tier, the next UVEU
reporting date when shares are measured only then); and, when Supp. 10 ¶6 shares are measured on the ¶10
reporting dates, the planner's "before" figures are `caps show`'s for the same date."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path

import pytest
from sqlmodel import select

from agent import caps as svc
from agent.packs import load_registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from tests.caps.conftest import seed_fleet

STATUS = "[{since: 2025-01-13, codified: true, enforced: true}]"


def _pack(tmp_path: Path, name: str, body: str) -> None:
    (tmp_path / f"{name}.yaml").write_text(
        f'id: {name}\nversion: "1"\ntitle: test pack {name}\nsource: test\nprovisions:\n{body}')


def _tighter_single_country_cap(tmp_path: Path, since: str = "2027-06-01") -> None:
    """A later version of Supp. 10 ¶6 with a 5% single-country cap (a test pack: the packs are data)."""
    _pack(tmp_path, "tighter-7pct", f"""
  - id: uveu-geographic-allocation
    title: test tighter single-country cap
    citation: "15 CFR 748 Supp. 10 para 6"
    effective_from: {since}
    status: {STATUS}
    values:
      max_share_outside_tier1: 0.25
      max_share_single_non_tier1_country: 0.05
      us_hq_max_share_outside_us: 0.50
      us_hq_country: US
      tier_caps_apply_to: hq-in-supp5a
      base: owned
      includes_parents_and_subsidiaries: true
      counts_eccn: "3A090.a"
      operator_must_hold_uveu_when_different: true
""")


def _pin_today(monkeypatch: pytest.MonkeyPatch, day: date) -> None:
    monkeypatch.setattr(svc, "utcnow", lambda: datetime(day.year, day.month, day.day, 12, tzinfo=UTC))


def test_a_plan_that_fits_its_date_but_breaks_a_cap_lowered_later_does_not_fit(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pin_today(monkeypatch, date(2027, 1, 10))
    _tighter_single_country_cap(tmp_path)
    packs = load_registry([tmp_path])
    seed_fleet(db_url)  # Aurora's group: 900 US, 30 AE, 70 DE
    with session_scope(db_url) as s:
        res = svc.whatif(s, packs, "aurora", n=30, chip_name="h100-sxm", site="dxb", as_of=date(2027, 3, 1))
    # 60/1030 = 5.8% in the UAE fits the 7% of 2027-03-01, not the 5% from 2027-06-01 (before the change: 3%).
    ae = next(c for c in res["caps"] if c["id"] == "uveu.single_country.AE.owned")
    assert ae["after"]["ok"] is True
    assert res["ok"] is False
    assert res["binding"] == "uveu.single_country.AE.owned" and res["binding_on"] == "2027-06-01"
    assert res["max_fit"] == 21  # 30 + x <= 5% of (1000 + x)
    later = {d["on"]: d for d in res["pack_dates"]}
    assert later["2027-06-01"]["ok"] is False
    assert later["2027-06-01"]["breaks"] == ["uveu.single_country.AE.owned"]
    assert "uveu-geographic-allocation" in later["2027-06-01"]["provisions"]
    # The answer says which dates were checked, the as-of date first.
    assert res["dates_checked"][0] == "2027-03-01" and "2027-06-01" in res["dates_checked"]
    with session_scope(db_url) as s, pytest.raises(svc.CapExceeded, match="at most 21 fit under aurora on 2027-06-01"):
        svc.reserve(s, packs, "aurora", n=30, chip_name="h100-sxm", site="dxb", planned_for=date(2027, 3, 1))
    with session_scope(db_url) as s:
        assert svc.whatif(s, packs, "aurora", n=21, chip_name="h100-sxm", site="dxb",
                          as_of=date(2027, 3, 1))["ok"] is True


def test_a_plan_after_the_cap_change_is_checked_on_its_own_date_only(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pin_today(monkeypatch, date(2027, 1, 10))
    _tighter_single_country_cap(tmp_path)
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        res = svc.whatif(s, packs, "aurora", n=30, chip_name="h100-sxm", site="dxb", as_of=date(2027, 7, 1))
    assert res["ok"] is False and res["binding_on"] == "2027-07-01" and res["max_fit"] == 21
    assert "2027-06-01" not in res["dates_checked"]


def test_a_country_leaving_supp5a_on_a_later_date_is_checked_and_exactly_7_percent_is_within(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Germany leaves Supp. 5(a) in a test pack: Aurora's 70 of 1,000 chips there are then exactly 7% (within
    "cannot ... install more than 7%"), and one more chip at fra breaks that cap on the day Germany moves tier."""
    _pin_today(monkeypatch, date(2027, 1, 10))
    _pack(tmp_path, "de-leaves", f"""
  - id: tier1-destinations
    title: test Germany leaves Supp. 5(a)
    citation: "15 CFR 740 Supp. 5(a)"
    effective_from: 2027-06-01
    status: {STATUS}
    values:
      countries: [AU, BE, CA, DK, FI, FR, IE, IT, JP, NL, NZ, "NO", KR, ES, SE, TW, GB, US]
""")
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        caps = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2027, 6, 1))}
        zero = svc.whatif(s, packs, "aurora", n=0, chip_name="h100-sxm", site="fra", as_of=date(2027, 3, 1))
        one = svc.whatif(s, packs, "aurora", n=1, chip_name="h100-sxm", site="fra", as_of=date(2027, 3, 1))
    de = caps["uveu.single_country.DE.owned"]
    assert de.value == Fraction(7, 100) and de.ok
    assert zero["ok"] is True
    assert one["ok"] is False and one["binding_on"] == "2027-06-01" and one["max_fit"] == 0
    assert next(d for d in one["pack_dates"] if d["on"] == "2027-06-01")["breaks"] == ["uveu.single_country.DE.owned"]


def test_a_later_date_whose_cap_is_over_without_the_plan_is_reported_not_blamed_on_it(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Table 1 to § 748.15(a)(2)(iii)(B) ends with 2027: from 2028-01-01 no NVEU allocation is in effect, so the
    NVEU is over with or without the plan. The planner says so on that date and still lets a plan fit 2027."""
    from agent.packs import registry

    _pin_today(monkeypatch, date(2026, 12, 5))
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        res = svc.whatif(s, registry(), "falcon-ae", n=10, chip_name="h100-sxm", site="dxb", as_of=date(2026, 12, 5))
    assert res["ok"] is True
    end = next(d for d in res["pack_dates"] if d["on"] == "2028-01-01")
    assert end["ok"] is True and end["over_already"] == ["nveu.installed_base.AE"] and end["breaks"] == []


def _measured_on_reporting_dates(tmp_path: Path) -> None:
    _pack(tmp_path, "measure", f"""
  - id: uveu-measurement-dates
    title: Reporting dates only
    citation: "15 CFR 748 Supp. 10 para 6 and 10"
    effective_from: 2025-01-13
    status: {STATUS}
    values: {{continuous: false, reporting_dates: ["02-01", "08-01"]}}
""")


def _late_uae_chips(url: str) -> None:
    """40 more H100 at dxb for Aurora EU from 2025-09-10, after the 2025-08-01 reporting date."""
    with session_scope(url) as s:
        dxb = s.exec(select(Site).where(Site.name == "dxb")).one()
        eu = s.exec(select(Holding).where(Holding.external_id == "h1")).one()
        s.add(Holding(source="test", external_id="late", site_id=dxb.id, accelerator="h100-sxm", count=40,
                      owner_id=eu.owner_id, operator_id=eu.owner_id, first_seen=datetime(2025, 9, 10, tzinfo=UTC)))


def test_measured_on_reporting_dates_the_whatif_before_figures_are_caps_shows(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = date(2025, 9, 15)
    _pin_today(monkeypatch, today)
    _measured_on_reporting_dates(tmp_path)
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    _late_uae_chips(db_url)
    with session_scope(db_url) as s:  # a plan made after the reporting date holds headroom now
        svc.reserve(s, packs, "aurora", n=10, chip_name="h100-sxm", site="iad", planned_for=date(2025, 9, 20))
    with session_scope(db_url) as s:
        shown = {c.id: c for c in svc.caps_for(s, packs, "aurora", today)}
        res = svc.whatif(s, packs, "aurora", n=1, chip_name="h100-sxm", site="iad", as_of=today)
    before = {c["id"]: c["before"] for c in res["caps"]}
    assert set(before) == set(shown)
    for cid, cap in shown.items():
        assert before[cid]["numerator_tpp"] == float(cap.numerator), cid
        assert before[cid]["denominator_tpp"] == (float(cap.denominator) if cap.kind == "share" else None), cid
    # Measured on 1 August (30 of 1,000 in the UAE), with the plan made since counted as placed.
    assert shown["uveu.single_country.AE.owned"].value == Fraction(30, 1010)


def test_measured_on_reporting_dates_a_plan_is_checked_on_the_next_reporting_date(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 40 chips installed in September are first measured on 2026-02-01: 10 more in the UAE are 80 of 1,050
    (7.6%) then, though the 1 August measurement plus the plan reads 40 of 1,010."""
    today = date(2025, 9, 15)
    _pin_today(monkeypatch, today)
    _measured_on_reporting_dates(tmp_path)
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    _late_uae_chips(db_url)
    with session_scope(db_url) as s:
        res = svc.whatif(s, packs, "aurora", n=10, chip_name="h100-sxm", site="dxb", as_of=today)
    ae = next(c for c in res["caps"] if c["id"] == "uveu.single_country.AE.owned")
    assert ae["after"]["ok"] is True
    assert res["ok"] is False and res["binding_on"] == "2026-02-01" and res["max_fit"] == 3
    feb = next(d for d in res["pack_dates"] if d["on"] == "2026-02-01")
    assert feb["breaks"] == ["uveu.single_country.AE.owned"] and "uveu-measurement-dates" in feb["provisions"]


def test_the_cli_and_the_dashboard_name_the_later_pack_date_a_plan_breaks(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from agent.api.app import create_app
    from agent.cli import app

    _pin_today(monkeypatch, date(2027, 1, 10))
    _tighter_single_country_cap(tmp_path)
    monkeypatch.setenv("VEU_POLICY_DIRS", str(tmp_path))
    seed_fleet(db_url)
    args = ["whatif", "aurora", "--add", "30", "--chip", "h100-sxm", "--site", "dxb", "--as-of", "2027-03-01"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "2027-06-01" in out.output and "uveu.single_country.AE.owned" in out.output
    assert "dates checked" in out.output
    js = CliRunner().invoke(app, [*args, "--json"])
    assert json.loads(js.output)["pack_dates"][0]["on"] == "2027-06-01"
    c = TestClient(create_app(db_url), base_url="https://testserver")
    r = c.post("/whatif", data={"authorization": "aurora", "op": "add", "n": "30", "chip": "h100-sxm",
                                "site": "dxb", "as_of": "2027-03-01"})
    assert r.status_code == 200, r.text[:300]
    assert 'id="pack-dates"' in r.text and "2027-06-01" in r.text
