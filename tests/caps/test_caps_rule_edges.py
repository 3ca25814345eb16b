"""Edges of the rule the caps must follow to the letter: who may hold a Data Center VEU (§ 748.15(b)(2)), which
shipments an authorization can cover (§§ 740.27(a), 740.29, 748.15(b)(2), Supp. 10 ¶4), the end of the 2025-2027
country allocation (§ 742.6(b)(10)(iii)(B)), and what the planner and the explanations read."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

import pytest
from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.caps import VeuAuthorization
from agent.store.tables.core import Holding, Party, Site
from policies.caps import Shipment, tier2_allocation_caps
from policies.errors import PolicyError
from policies.packs import PackRegistry
from tests.caps.conftest import seed_fleet
from tests.caps.test_caps_bad_input import refused, written
from tests.caps.test_caps_store import veuctl

H100 = 15832


def _parties(url: str, *rows: tuple[str, str, str | None]) -> None:
    with session_scope(url) as s:
        for name, hq, parent in rows:
            party_svc.add_party(s, name, hq, parent=parent)


# ------------------------------------------------------------------ § 742.6(b)(10)(iii)(B): 2025 to 2027 only


def test_tier2_country_allocation_for_2025_to_2027_is_not_in_effect_after_2027(packs: PackRegistry) -> None:
    # "up to a per-country allocation of 790,000,000 TPP for the period from 2025 to 2027"; after that BIS
    # "will review allocations for subsequent years": a 2028 licence may not be shown as fitting the old one.
    ledger = [Shipment(None, date(2027, 6, 1), "Lumen", "SG", "H100", Fraction(1), Fraction(100_000_000), "3A090.a",
                       "licence"),
              Shipment(None, date(2028, 3, 1), "Lumen", "SG", "H100", Fraction(1), Fraction(10**12), "3A090.a",
                       "licence")]
    c = {x.id: x for x in tier2_allocation_caps(packs, ledger, date(2027, 12, 31))}["tier2.country_allocation.SG"]
    assert c.ok and c.limit == 790_000_000 and c.numerator == 100_000_000
    c = {x.id: x for x in tier2_allocation_caps(packs, ledger, date(2028, 6, 1))}["tier2.country_allocation.SG"]
    assert c.limit is None and not c.ok and c.headroom is None
    assert c.numerator == 100_000_000 + 10**12 and "2027-12-31" in c.note


# ------------------------------------------------------------------ § 748.15(b)(2): who may hold the VEU


def test_uveu_holder_must_be_headquartered_or_have_its_ultimate_parent_in_supp5a(db_url: str) -> None:
    seed_fleet(db_url)  # Aurora (US), Aurora EU (DE, parent Aurora), Falcon (AE), Lumen (SG)
    _parties(db_url, ("Gulf Sub", "AE", "Aurora"), ("Dragon", "CN", None), ("Dragon SG", "SG", "Dragon"))
    packs = registry()
    with session_scope(db_url) as s:
        for name, holder in (("f-u", "Falcon"), ("l-u", "Lumen")):
            with pytest.raises(PolicyError, match=r"^--holder: .*Supp\. 5\(a\)"):
                svc.add_authorization(s, packs, name, "uveu", holder, None)
        # Headquartered outside, ultimate parent inside: eligible ("or have their ultimate parent ...").
        svc.add_authorization(s, packs, "gulf-sub-u", "uveu", "Gulf Sub", None)
        svc.add_authorization(s, packs, "aurora-eu-u", "uveu", "Aurora EU", None)


def test_data_center_veu_holder_headquartered_or_parented_in_d5_is_refused(db_url: str) -> None:
    seed_fleet(db_url)
    _parties(db_url, ("Dragon", "CN", None), ("Dragon SG", "SG", "Dragon"))
    packs = registry()
    with session_scope(db_url) as s:
        for name, holder, kind, cc in (("d-n", "Dragon SG", "nveu", "SG"), ("d-n2", "Dragon", "nveu", "AE"),
                                       ("d-u", "Dragon", "uveu", None)):
            with pytest.raises(PolicyError, match=r"^--holder: .*D:5"):
                svc.add_authorization(s, packs, name, kind, holder, cc)
        with pytest.raises(PolicyError, match=r"^name: 'allocations'"):
            svc.add_authorization(s, packs, "allocations", "uveu", "Aurora", None)
        assert {a.name for a in s.exec(select(VeuAuthorization)).all()} == {"aurora", "falcon-ae"}


# ------------------------------------------------------------------ which shipments an authorization covers


def test_lpp_is_not_available_to_a_consignee_whose_ultimate_parent_is_headquartered_in_d5(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    _parties(db_url, ("Dragon", "CN", None), ("Dragon SG", "SG", "Dragon"))
    before = written(db_url)
    base = ["shipments", "add", "--destination", "SG", "--chip", "h100", "--via", "lpp", "--date", "2025-06-01",
            "--count", "1"]
    for consignee in ("Dragon SG", "Dragon"):
        err = refused([*base, "--consignee", consignee], "--via", capsys, monkeypatch)
        assert "LPP is not available" in err and "China" in err
    assert written(db_url) == before
    rc, data, _ = veuctl([*base, "--consignee", "Lumen", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["via"] == "lpp"


def test_aia_covers_only_entities_located_and_headquartered_in_supp5a(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    before = written(db_url)
    base = ["shipments", "add", "--chip", "h100", "--via", "aia", "--date", "2025-06-01", "--count", "1"]
    # Located outside Supp. 5(a): an AIA shipment to Singapore would also escape the SG country allocation.
    refused([*base, "--consignee", "Lumen", "--destination", "SG"], "--via", capsys, monkeypatch)
    # Located in Germany, headquartered in the UAE: excluded by § 740.27(a).
    refused([*base, "--consignee", "Falcon", "--destination", "DE"], "--via", capsys, monkeypatch)
    assert written(db_url) == before
    rc, data, _ = veuctl([*base, "--consignee", "Aurora EU", "--destination", "DE", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["via"] == "aia"


def test_uveu_shipment_to_d5_or_to_a_d5_headquartered_consignee_is_refused(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    _parties(db_url, ("Dragon", "CN", None), ("Dragon SG", "SG", "Dragon"))
    before = written(db_url)
    base = ["shipments", "add", "--chip", "h100", "--via", "uveu", "--authorization", "aurora", "--date",
            "2025-06-01", "--count", "1"]
    err = refused([*base, "--consignee", "Aurora", "--destination", "CN"], "--destination", capsys, monkeypatch)
    assert "CN" in err
    refused([*base, "--consignee", "Aurora", "--destination", "MO"], "--destination", capsys, monkeypatch)
    refused([*base, "--consignee", "Dragon SG", "--destination", "SG"], "--consignee", capsys, monkeypatch)
    assert written(db_url) == before


# ------------------------------------------------------------------ planner and explanations


def test_reservation_planned_for_a_past_date_is_checked_against_todays_installed_base(db_url: str) -> None:
    seed_fleet(db_url)  # Aurora group: 900 US, 70 DE, 30 AE installed since 2025-03-01
    with session_scope(db_url) as s:
        site = s.exec(select(Site).where(Site.name == "dxb")).one()
        owner = s.exec(select(Party).where(Party.name == "Aurora EU")).one()
        s.add(Holding(source="test", external_id="late", site_id=site.id, accelerator="h100-sxm", count=40,
                      owner_id=owner.id, operator_id=owner.id, first_seen=datetime(2025, 9, 1, tzinfo=UTC)))
    # Today 70 of 1040 are in the UAE: (70 + N) <= 7% (1040 + N) leaves N <= 3. On 2025-06-01 only 30 of 1000
    # were, which would leave 43: a plan dated then must not spend headroom the fleet no longer has.
    packs = registry()
    with session_scope(db_url) as s, pytest.raises(svc.CapExceeded, match="at most 3 fit"):
        svc.reserve(s, packs, "aurora", n=10, chip_name="h100", site="dxb", planned_for=date(2025, 6, 1))
    with session_scope(db_url) as s:
        svc.reserve(s, packs, "aurora", n=3, chip_name="h100", site="dxb", planned_for=date(2025, 6, 1))
        caps = {c.id: c for c in svc.caps_for(s, packs, "aurora", datetime.now(UTC).date())}
        assert caps["uveu.single_country.AE.owned"].ok


def test_explain_of_an_operated_share_lists_only_holdings_the_group_operates(db_url: str) -> None:
    seed_fleet(db_url)  # Falcon (not in Aurora's group) operates 100 H100 at dxb
    packs = registry()
    with session_scope(db_url) as s:
        d = svc.explain(s, packs, "aurora", "uveu.single_country.AE.operated", date(2025, 6, 1), 100, 0)
        assert {h["operator"] for h in d["holdings"]["items"]} == {"Aurora EU"}
        assert sum(h["tpp"] for h in d["holdings"]["items"]) == d["numerator_tpp"] == 30 * H100
        d = svc.explain(s, packs, "aurora", "uveu.outside_tier1.operated", date(2025, 6, 1), 100, 0, "all")
        assert sum(h["tpp"] for h in d["holdings"]["items"]) == d["denominator_tpp"] == 1000 * H100


def test_unknown_chip_country_or_party_errors_name_the_option(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    before = written(db_url)
    whatif = ["whatif", "aurora", "--add", "1", "--site", "dxb", "--as-of", "2025-06-01"]
    assert "nochip" in refused([*whatif, "--chip", "nochip"], "--chip", capsys, monkeypatch)
    assert "'Nobody' is not registered" in refused([*whatif, "--chip", "h100", "--owner", "Nobody"], "--owner",
                                                   capsys, monkeypatch)
    refused([*whatif, "--chip", "h100", "--operator", "Nobody"], "--operator", capsys, monkeypatch)
    ship = ["shipments", "add", "--chip", "h100", "--via", "licence", "--date", "2025-06-01", "--count", "1"]
    refused([*ship, "--consignee", "Lumen", "--destination", "XX"], "--destination", capsys, monkeypatch)
    refused([*ship, "--consignee", "Nobody", "--destination", "SG"], "--consignee", capsys, monkeypatch)
    refused([*ship, "--consignee", "Lumen", "--destination", "SG", "--chip", "nochip"], "--chip", capsys, monkeypatch)
    refused(["shipments", "list", "--destination", "XX"], "--destination", capsys, monkeypatch)
    refused(["authorizations", "add", "x", "--kind", "uveu", "--holder", "Nobody"], "--holder", capsys, monkeypatch)
    refused(["authorizations", "add", "x", "--kind", "nveu", "--holder", "Falcon", "--country", "ZZ"], "--country",
            capsys, monkeypatch)
    err = refused(["caps", "explain", "allocations", "nocap"], "cap", capsys, monkeypatch)
    assert "`veuctl caps show`" in err  # not `caps show allocations`, which looks for an authorization
    assert written(db_url) == before


def test_cli_shows_a_share_of_100_percent_as_a_percentage(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    _parties(db_url, ("Nimbus", "GB", None))
    packs = registry()
    with session_scope(db_url) as s:
        site = s.exec(select(Site).where(Site.name == "dxb")).one()
        nimbus = s.exec(select(Party).where(Party.name == "Nimbus")).one()
        s.add(Holding(source="test", external_id="nimbus", site_id=site.id, accelerator="h100-sxm", count=10,
                      owner_id=nimbus.id, operator_id=nimbus.id, first_seen=datetime(2025, 3, 1, tzinfo=UTC)))
        svc.add_authorization(s, packs, "nimbus", "uveu", "Nimbus", None)
    monkeypatch.setenv("COLUMNS", "200")
    rc, out, _ = veuctl(["caps", "show", "nimbus", "--as-of", "2025-06-01"], capsys, monkeypatch)
    row = next(x for x in out.splitlines() if "uveu.outside_tier1.owned" in x)
    assert rc == 0 and "100.0000%" in row and "25.0000%" in row
    rc, out, _ = veuctl(["whatif", "nimbus", "--add", "1", "--chip", "h100", "--site", "dxb", "--as-of",
                         "2025-06-01"], capsys, monkeypatch)
    row = next(x for x in out.splitlines() if "uveu.outside_tier1.owned" in x)
    assert rc == 0 and row.count("100.0000%") == 2


def test_reservation_refused_while_a_cap_is_over_says_how_many_would_cure_it(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)  # Aurora group: 30 of 1000 in the UAE
    with session_scope(db_url) as s:
        site = s.exec(select(Site).where(Site.name == "dxb")).one()
        owner = s.exec(select(Party).where(Party.name == "Aurora EU")).one()
        s.add(Holding(source="test", external_id="over", site_id=site.id, accelerator="h100-sxm", count=70,
                      owner_id=owner.id, operator_id=owner.id, first_seen=datetime(2025, 3, 1, tzinfo=UTC)))
    # 100 of 1070 in the UAE (9.3%): 100 <= 7% (1070 + N) needs N >= 359 more in the US; 5 are not enough,
    # and the refusal must say so rather than "at most None fit".
    with session_scope(db_url) as s, pytest.raises(svc.CapExceeded) as exc:
        svc.reserve(s, registry(), "aurora", n=5, chip_name="h100", site="iad", planned_for=date(2025, 6, 1))
    assert "None" not in str(exc.value) and "359 or more fit" in str(exc.value)
    rc, out, _ = veuctl(["whatif", "aurora", "--add", "5", "--chip", "h100", "--site", "iad", "--as-of",
                         "2025-06-01"], capsys, monkeypatch)
    assert rc == 0 and "min N: 359" in out
