"""Session 24 (O) on the what-if planner's later pack dates and measurement dates: a plan into a country that joins
Country Group D:5 later is refused on that date even where the fleet holds no chips yet; a date is skipped only when
none of the provisions the authorization's caps read changes on it; and, with Supp. 10 ¶6 shares measured on the ¶10
reporting dates, a plan installed since the last reporting date still counts (in `caps show` and the what-if alike)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path

import pytest
from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.packs import load_registry, registry
from agent.store import session_scope
from agent.store.tables.caps import Reservation
from agent.store.tables.core import Holding, Site
from policies import caps as core
from policies.packs import PackRegistry
from tests.caps.conftest import seed_fleet

STATUS = "[{since: 2025-01-13, codified: true, enforced: true}]"


def _pack(tmp_path: Path, name: str, body: str) -> None:
    (tmp_path / f"{name}.yaml").write_text(
        f'id: {name}\nversion: "1"\ntitle: test pack {name}\nsource: test\nprovisions:\n{body}')


def _pin_today(monkeypatch: pytest.MonkeyPatch, day: date) -> None:
    monkeypatch.setattr(svc, "utcnow", lambda: datetime(day.year, day.month, day.day, 12, tzinfo=UTC))


def _vietnam_joins_d5(tmp_path: Path) -> None:
    """Viet Nam added to Country Group D:5 from 2027-06-01 (a test pack: the packs are data)."""
    _pack(tmp_path, "vn-d5", f"""
  - id: country-group-d5
    title: test D:5 with Viet Nam
    citation: "15 CFR 740 Supp. 1, D:5"
    effective_from: 2027-06-01
    status: {STATUS}
    values:
      countries: [AF, BY, MM, CF, CN, CD, CU, ER, HT, IR, IQ, KP, LB, LY, NI, RU, SO, SS, SD, SY, VE, ZW, VN]
""")


def test_a_plan_into_a_country_joining_d5_later_breaks_the_excluded_locations_cap_on_that_date(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§ 748.15(b)(2)(ii): no VEU data center in D:5. The fleet has no chip in Viet Nam, so the caps without the
    plan are the same before and after Viet Nam joins D:5; the plan's chips there still break the cap that day."""
    _pin_today(monkeypatch, date(2027, 1, 10))
    _vietnam_joins_d5(tmp_path)
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        party_svc.add_site(s, "hcm", "VN")
    with session_scope(db_url) as s:
        res = svc.whatif(s, packs, "aurora", n=5, chip_name="h100-sxm", site="hcm", as_of=date(2027, 3, 1))
    assert res["ok"] is False
    assert res["binding"] == "uveu.excluded_locations.owned" and res["binding_on"] == "2027-06-01"
    assert res["max_fit"] == 0
    june = next(d for d in res["pack_dates"] if d["on"] == "2027-06-01")
    assert june["ok"] is False and june["breaks"] == ["uveu.excluded_locations.owned"]
    assert "country-group-d5" in june["provisions"]
    with session_scope(db_url) as s, pytest.raises(svc.CapExceeded, match=re.escape("uveu.excluded_locations.owned")):
        svc.reserve(s, packs, "aurora", n=5, chip_name="h100-sxm", site="hcm", planned_for=date(2027, 3, 1))


def test_a_uveu_plan_is_not_checked_on_dates_only_the_nveu_table_or_chip_thresholds_change_on(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Table 1 to § 748.15(a)(2)(iii)(B) (NVEU), the transistor thresholds and the IC designer list change on
    2027-01-01, 2028-01-01 and 2029-01-01 in the shipped packs; no UVEU cap reads them, so a UVEU plan is checked on
    its own date only, while an NVEU plan is checked where its allocation changes."""
    _pin_today(monkeypatch, date(2026, 12, 5))
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        uveu = svc.whatif(s, packs, "aurora", n=8, chip_name="h100-sxm", site="iad", as_of=date(2026, 12, 5))
        nveu = svc.whatif(s, packs, "falcon-ae", n=8, chip_name="h100-sxm", site="dxb", as_of=date(2026, 12, 5))
    assert uveu["dates_checked"] == ["2026-12-05"] and uveu["pack_dates"] == []
    assert uveu["pack_horizon"] == "2029-01-01"  # the packs' horizon is still every provision's
    assert {"2027-01-01", "2028-01-01"} <= set(nveu["dates_checked"])
    assert "2029-01-01" not in nveu["dates_checked"]


def test_the_provisions_the_caps_read_are_those_the_planner_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every provision authorization_caps resolves (recorded on a fresh registry) is one caps_provision_ids lists:
    a provision missing there would let a later change to it go unchecked."""
    from agent.packs import registry as shipped
    from policies.parties import PartyRef

    packs = PackRegistry(shipped().packs)
    read: set[str] = set()
    real = PackRegistry._find

    def record(self: PackRegistry, provision_id: str, as_of: date):  # type: ignore[no-untyped-def]
        read.add(provision_id)
        return real(self, provision_id, as_of)

    monkeypatch.setattr(PackRegistry, "_find", record)
    parties = {"Aurora": PartyRef("Aurora", "US", None), "Aurora EU": PartyRef("Aurora EU", "DE", "Aurora"),
               "Falcon": PartyRef("Falcon", "AE", None)}
    fleet = [core.Placement(site, cc, "h100-sxm", Fraction(10), Fraction(15832), "3A090.a", owner, owner)
             for site, cc, owner in (("iad", "US", "Aurora"), ("dxb", "AE", "Aurora EU"), ("dxb", "AE", "Falcon"),
                                     ("sgn", "VN", "Aurora EU"))]
    for kind, holder, country in (("uveu", "Aurora", None), ("nveu", "Falcon", "AE")):
        auth = core.Authorization(f"test-{kind}", kind, holder, country)  # type: ignore[arg-type]
        read.clear()
        for on in (date(2025, 6, 1), date(2026, 3, 1), date(2027, 6, 1)):
            core.authorization_caps(packs, parties, auth, fleet, on, ["VN"])
        assert read <= core.caps_provision_ids(packs, auth), (kind, read - core.caps_provision_ids(packs, auth))


def _measured_on_reporting_dates(tmp_path: Path) -> None:
    _pack(tmp_path, "measure", f"""
  - id: uveu-measurement-dates
    title: Reporting dates only
    citation: "15 CFR 748 Supp. 10 para 6 and 10"
    effective_from: 2025-01-13
    status: {STATUS}
    values: {{continuous: false, reporting_dates: ["02-01", "08-01"]}}
""")


def _installed_after_the_reporting_date(url: str, rid: int) -> None:
    """Reservation ``rid`` (made 2025-07-20) installed on 2025-08-20: its 40 chips join the inventory then."""
    with session_scope(url) as s:
        r = s.get(Reservation, rid)
        assert r is not None
        r.created_at = datetime(2025, 7, 20, 12, tzinfo=UTC)
        r.status, r.closed_at = "installed", datetime(2025, 8, 20, 12, tzinfo=UTC)
        dxb = s.exec(select(Site).where(Site.name == "dxb")).one()
        eu = s.exec(select(Holding).where(Holding.external_id == "h1")).one()
        s.add(Holding(source="test", external_id="r", site_id=dxb.id, accelerator="h100-sxm", count=40,
                      owner_id=eu.owner_id, operator_id=eu.owner_id, first_seen=datetime(2025, 8, 20, 12, tzinfo=UTC)))


def test_measured_on_reporting_dates_a_plan_installed_since_the_reporting_date_still_counts(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Supp. 10 ¶6 measured on 2025-08-01: a plan open then and installed on 2025-08-20 is not in that day's
    installed base, nor open on 2025-09-15; its chips still count until the next reporting date measures them."""
    _pin_today(monkeypatch, date(2025, 7, 20))
    _measured_on_reporting_dates(tmp_path)
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        rid = svc.reserve(s, packs, "aurora", n=40, chip_name="h100-sxm", site="dxb",
                          planned_for=date(2025, 8, 20)).id
    assert rid is not None
    _installed_after_the_reporting_date(db_url, rid)
    _pin_today(monkeypatch, date(2025, 9, 15))
    with session_scope(db_url) as s:
        shown = {d: {c.id: c for c in svc.caps_for(s, packs, "aurora", d)}
                 for d in (date(2025, 8, 19), date(2025, 9, 15))}
        res = svc.whatif(s, packs, "aurora", n=0, chip_name="h100-sxm", site="dxb", as_of=date(2025, 9, 15))
    ae = "uveu.single_country.AE.owned"
    # 30 + 40 of 1,000 + 40 chips, on 2025-08-19 (the plan open) and on 2025-09-15 (the plan installed) alike.
    assert shown[date(2025, 8, 19)][ae].value == Fraction(70, 1040)
    assert shown[date(2025, 9, 15)][ae].value == Fraction(70, 1040)
    before = {c["id"]: c["before"] for c in res["caps"]}
    for cid, cap in shown[date(2025, 9, 15)].items():
        assert before[cid]["numerator_tpp"] == float(cap.numerator), cid
        assert before[cid]["denominator_tpp"] == (float(cap.denominator) if cap.kind == "share" else None), cid


def _two_percent_single_country_cap_from_june(tmp_path: Path) -> None:
    """A later version of Supp. 10 ¶6 with a 2% single-country cap from 2027-06-01 (a test pack)."""
    _pack(tmp_path, "two-pct", f"""
  - id: uveu-geographic-allocation
    title: test 2% single-country cap
    citation: "15 CFR 748 Supp. 10 para 6"
    effective_from: 2027-06-01
    status: {STATUS}
    values:
      max_share_outside_tier1: 0.25
      max_share_single_non_tier1_country: 0.02
      us_hq_max_share_outside_us: 0.50
      us_hq_country: US
      tier_caps_apply_to: hq-in-supp5a
      base: owned
      includes_parents_and_subsidiaries: true
      counts_eccn: "3A090.a"
      operator_must_hold_uveu_when_different: true
""")


def test_a_plan_that_adds_to_a_cap_already_over_on_a_later_date_does_not_fit_and_one_that_lowers_it_does(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From 2027-06-01 Aurora's 30 of 1,000 chips in the UAE (3%) are over a 2% cap without any plan: more chips
    in the UAE take it further over (blamed on the plan); chips in the US bring the share down (not blamed)."""
    _pin_today(monkeypatch, date(2027, 1, 10))
    _two_percent_single_country_cap_from_june(tmp_path)
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    ae = "uveu.single_country.AE.owned"
    with session_scope(db_url) as s:
        worse = svc.whatif(s, packs, "aurora", n=5, chip_name="h100-sxm", site="dxb", as_of=date(2027, 3, 1))
        better = svc.whatif(s, packs, "aurora", n=5, chip_name="h100-sxm", site="iad", as_of=date(2027, 3, 1))
    june = next(d for d in worse["pack_dates"] if d["on"] == "2027-06-01")
    assert june["over_already"] == [ae] and june["breaks"] == [ae] and june["ok"] is False
    assert worse["ok"] is False and worse["binding"] == ae and worse["binding_on"] == "2027-06-01"
    assert worse["max_fit"] == 0
    june = next(d for d in better["pack_dates"] if d["on"] == "2027-06-01")
    assert june["over_already"] == [ae] and june["breaks"] == [] and june["ok"] is True
    assert better["ok"] is True
    with session_scope(db_url) as s, pytest.raises(svc.CapExceeded, match=re.escape(ae)):
        svc.reserve(s, packs, "aurora", n=5, chip_name="h100-sxm", site="dxb", planned_for=date(2027, 3, 1))


def test_the_cli_and_the_dashboard_say_a_plan_takes_a_cap_further_over_on_a_later_date(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from agent.api.app import create_app
    from agent.cli import app

    _pin_today(monkeypatch, date(2027, 1, 10))
    _two_percent_single_country_cap_from_june(tmp_path)
    monkeypatch.setenv("VEU_POLICY_DIRS", str(tmp_path))
    seed_fleet(db_url)
    out = CliRunner().invoke(app, ["whatif", "aurora", "--add", "5", "--chip", "h100-sxm", "--site", "dxb",
                                   "--as-of", "2027-03-01"])
    assert out.exit_code == 0, out.output
    assert "takes uveu.single_country.AE.owned further over" in " ".join(out.output.split())
    c = TestClient(create_app(db_url), base_url="https://testserver")
    r = c.post("/whatif", data={"authorization": "aurora", "op": "add", "n": "5", "chip": "h100-sxm",
                                "site": "dxb", "as_of": "2027-03-01"})
    assert r.status_code == 200, r.text[:300]
    assert "this change takes uveu.single_country.AE.owned further over" in r.text
