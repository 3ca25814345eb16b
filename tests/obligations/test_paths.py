"""The licence-exception path finder, table-driven and dated, against the built-in policy packs."""

from __future__ import annotations

from datetime import date

import pytest

from policies.errors import NotInEffect, PartyError, PolicyError
from policies.packs import PackRegistry
from policies.parties import PartyRef
from policies.paths import (
    AuthorizationRef,
    ItemLine,
    Proposal,
    ShipmentRef,
    find_paths,
    parse_items,
    tier2_allocation,
)

H100_TPP = 15832.0  # catalog figure for an H100 SXM (989.5 TFLOPS dense FP16/BF16 x 16 bits)

PARTIES = {
    "Acme": PartyRef("Acme", "DE"),
    "AcmeMY": PartyRef("AcmeMY", "MY", "Acme"),
    "Gulf": PartyRef("Gulf", "AE"),
    "GulfUS": PartyRef("GulfUS", "US", "Gulf"),
    "Phnom": PartyRef("Phnom", "KH"),
    "Sino": PartyRef("Sino", "CN"),
    "Opco": PartyRef("Opco", "IN"),
    "OpcoParent": PartyRef("OpcoParent", "JP"),
    "OpcoJP": PartyRef("OpcoJP", "JP", "OpcoParent"),
}

AFTER = date(2025, 6, 2)  # after the 2025-05-15 compliance date
BEFORE = date(2025, 3, 3)  # after the 2025-01-13 effective date, before compliance


def h100(n: int) -> tuple[ItemLine, ...]:
    return (ItemLine("H100 SXM", n, H100_TPP, "3A090.a"),)


def laptop(n: int) -> tuple[ItemLine, ...]:
    return (ItemLine("RTX 5090 Laptop", n, 5000.0, "3A090.a", datacenter=False),)


def run(items: tuple[ItemLine, ...], consignee: str, country: str, on: date = AFTER, **kw):  # type: ignore[no-untyped-def]
    packs_ = kw.pop("packs")
    auths = kw.pop("auths", ())
    ships = kw.pop("ships", ())
    return find_paths(packs_, PARTIES, Proposal(kw.pop("kind", "export"), items, consignee, country, on, **kw),
                      auths, ships)


# (case, items, consignee, country, date, extra, path, open, fragment of a reason or condition)
CASES = [
    ("aia_tier1_located_and_hq_with_certification", h100(8), "Acme", "DE", AFTER, {"aia_certified": True},
     "AIA", True, "certification on file"),
    ("aia_needs_prior_certification", h100(8), "Acme", "DE", AFTER, {}, "AIA", False, "(b)(2) certification"),
    ("aia_excludes_tier1_located_subsidiary_of_tier2_parent", h100(8), "GulfUS", "US", AFTER,
     {"aia_certified": True}, "AIA", False, "ultimate parent"),
    ("aia_not_outside_tier1", h100(8), "AcmeMY", "MY", AFTER, {"aia_certified": True}, "AIA", False,
     "not listed in 15 CFR 740 Supp. 5(a)"),
    ("acm_for_development_by_private_end_user", h100(8), "Gulf", "AE", AFTER, {"end_use": "development"},
     "ACM", True, "development"),
    ("acm_needs_listed_end_use", h100(8), "Gulf", "AE", AFTER, {"end_use": "training"}, "ACM", False,
     "end use given: training"),
    ("acm_not_to_d5", h100(8), "Sino", "CN", AFTER, {"end_use": "storage"}, "ACM", False, "Tier 3"),
    ("lpp_small_export_to_tier2", h100(100), "Gulf", "AE", AFTER, {}, "LPP", True, "1,583,200 of 26,900,000"),
    ("lpp_over_the_calendar_year_limit", h100(2048), "Gulf", "AE", AFTER, {}, "LPP", False,
     "exceed the per-calendar-year limit"),
    ("lpp_no_in_country_transfers", h100(10), "Gulf", "AE", AFTER, {"kind": "transfer"}, "LPP", False,
     "does not authorize transfers (in-country)"),
    ("lpp_not_for_d5_headquartered_consignee", h100(10), "Sino", "CN", AFTER, {}, "LPP", False, "Macau or D:5"),
    ("lpp_notify_bis_at_3_2m_tpp_per_shipment", h100(203), "Gulf", "AE", AFTER, {}, "LPP", True,
     "notify BIS before this shipment"),
    ("aca_for_non_datacenter_chips", laptop(10), "Gulf", "AE", AFTER, {}, "ACA", True, "non-datacenter"),
    ("aca_not_for_datacenter_chips", h100(10), "Gulf", "AE", AFTER, {}, "ACA", False, "datacenter items"),
    ("nac_for_non_datacenter_chips_to_d5_with_notice", laptop(10), "Sino", "CN", AFTER, {}, "NAC", True,
     "prior notification"),
    ("aca_not_to_d5", laptop(10), "Sino", "CN", AFTER, {}, "ACA", False, "does not cover Macau or D:5"),
    ("licence_presumption_of_denial_for_d5", h100(8), "Sino", "CN", AFTER, {}, "LICENCE", False,
     "presumption of denial"),
    ("licence_presumption_of_approval_for_tier1", h100(8), "Acme", "DE", AFTER, {}, "LICENCE", True,
     "(A)(2)"),
    ("licence_approval_for_tier1_parent_in_tier2_country", h100(8), "AcmeMY", "MY", AFTER, {}, "LICENCE", True,
     "headquartered in"),
    ("licence_approval_up_to_tier2_allocation", h100(2048), "Gulf", "AE", AFTER, {}, "LICENCE", True,
     "of 790,000,000 TPP"),
    ("nlr_before_compliance_date_for_tier2", h100(2048), "Gulf", "BR", BEFORE, {}, "NLR", True,
     "before the 2025-05-15 compliance date"),
    # The UAE's move from D:4 into A:5 is undated in the reference: the default keeps it in D:4 until the
    # first list without it, so before the compliance date the Oct 2023 rule's licence applies.
    ("uae_in_d4_needs_a_licence_before_compliance_date", h100(2048), "Gulf", "AE", BEFORE, {}, "NLR", False,
     "United Arab Emirates is in Country Group D:4 and not in A:5"),
    ("licence_required_after_compliance_date_for_tier2", h100(2048), "Gulf", "AE", AFTER, {}, "NLR", False,
     "licence required to any destination"),
    ("licence_required_before_compliance_for_d1", h100(8), "Sino", "CN", BEFORE, {}, "NLR", False, "D:1"),
    ("cambodia_d5_before_2026_02_03_denial", h100(8), "Phnom", "KH", date(2026, 2, 2), {}, "LICENCE", False,
     "presumption of denial"),
    ("cambodia_tier2_from_2026_02_03_approval", h100(8), "Phnom", "KH", date(2026, 2, 3), {}, "LICENCE", True,
     "up to the country allocation"),
    ("cambodia_lpp_closed_while_d5", h100(8), "Phnom", "KH", date(2026, 2, 2), {}, "LPP", False, "Macau or D:5"),
    ("cambodia_lpp_open_after_removal", h100(8), "Phnom", "KH", date(2026, 2, 3), {}, "LPP", True, "of 26,900,000"),
    ("licence_after_allocation_period_has_no_loaded_policy", h100(8), "Gulf", "AE", date(2028, 1, 2), {},
     "LICENCE", False, "allocation period ended"),
]


@pytest.mark.parametrize(
    ("case", "items", "consignee", "country", "on", "extra", "path", "is_open", "fragment"),
    CASES, ids=[c[0] for c in CASES],
)
def test_path_and_reason(
    packs: PackRegistry, case: str, items: tuple[ItemLine, ...], consignee: str, country: str, on: date,
    extra: dict[str, object], path: str, is_open: bool, fragment: str,
) -> None:
    rep = run(items, consignee, country, on, packs=packs, **extra)
    res = rep.path(path)
    text = " | ".join(res.reasons + res.conditions)
    assert res.open is is_open, f"{case}: {path} open={res.open}: {text}"
    assert fragment in text, f"{case}: {fragment!r} not in {text!r}"
    d = res.to_dict()
    assert d["citations"], "every path cites the provisions it relies on"
    assert d["codified"] is True


def test_paths_show_non_enforcement_after_2025_05_13(packs: PackRegistry) -> None:
    early = run(h100(8), "Acme", "DE", date(2025, 5, 12), packs=packs).path("LICENCE").to_dict()
    late = run(h100(8), "Acme", "DE", AFTER, packs=packs).path("LICENCE").to_dict()
    assert early["enforced"] is True and late["enforced"] is False
    assert late["codified"] is True


def test_unconfirmed_provisions_are_visible_on_aca(packs: PackRegistry) -> None:
    d = run(laptop(2), "Gulf", "AE", packs=packs).path("ACA").to_dict()
    assert d["confirmed"] is False and any("licence-exception-nac-aca" in u for u in d["unconfirmed"])


def test_lpp_limit_resets_at_the_calendar_year_boundary(packs: PackRegistry) -> None:
    ships = [ShipmentRef(date(2025, 12, 30), "Gulf", "AE", 26_000_000, "LPP")]
    dec = run(h100(100), "Gulf", "AE", date(2025, 12, 31), packs=packs, ships=ships).path("LPP")
    jan = run(h100(100), "Gulf", "AE", date(2026, 1, 1), packs=packs, ships=ships).path("LPP")
    assert not dec.open and dec.figures["used_tpp"] == 26_000_000
    assert jan.open and jan.figures["used_tpp"] == 0 and jan.figures["calendar_year"] == 2026


def test_lpp_limit_counts_every_shipment_of_the_calendar_year_even_one_dated_after_the_proposal(
    packs: PackRegistry,
) -> None:
    # § 740.29's limit is per calendar year: 23.7M already shipped in September leaves 3.2M for the year,
    # whatever day of it a proposal is dated.
    ships = [ShipmentRef(date(2026, 9, 1), "Gulf", "AE", 23_700_000, "LPP")]
    march = run(h100(1500), "Gulf", "AE", date(2026, 3, 1), packs=packs, ships=ships).path("LPP")
    assert not march.open and march.figures["used_tpp"] == 23_700_000


def test_lpp_counts_against_the_ultimate_parent_as_ultimate_consignee(packs: PackRegistry) -> None:
    ships = [ShipmentRef(date(2025, 5, 20), "Acme", "DE", 26_000_000, "LPP")]
    res = run(h100(100), "AcmeMY", "MY", packs=packs, ships=ships).path("LPP")
    assert not res.open and res.figures["counted_against"] == "Acme"


def test_lpp_tier1_owner_may_apply_toward_the_operators_limit(packs: PackRegistry) -> None:
    ships = [ShipmentRef(date(2025, 5, 20), "Acme", "IN", 26_000_000, "LPP")]
    res = run(h100(100), "Acme", "IN", packs=packs, ships=ships, operator="OpcoJP").path("LPP")
    assert res.open and res.figures["counted_against"] == "OpcoParent"
    assert any("operator's ultimate parent" in r for r in res.reasons)


def test_lpp_non_tier1_owner_cannot_shift_to_the_operator(packs: PackRegistry) -> None:
    ships = [ShipmentRef(date(2025, 5, 20), "Gulf", "IN", 26_000_000, "LPP")]
    res = run(h100(100), "Gulf", "IN", packs=packs, ships=ships, operator="Opco").path("LPP")
    assert not res.open and res.figures["counted_against"] == "Gulf"


def test_licence_presumption_turns_to_denial_when_tier2_allocation_is_exhausted(packs: PackRegistry) -> None:
    ships = [ShipmentRef(date(2025, 5, 20), "Other", "AE", 789_000_000, "LICENCE"),
             ShipmentRef(date(2025, 5, 20), "Other", "AE", 50_000_000, "LPP")]  # LPP does not count
    res = run(h100(64), "Gulf", "AE", packs=packs, ships=ships).path("LICENCE")
    assert not res.open and res.presumption == "denial" and "exceeds the country allocation" in res.reasons[0]
    small = run(h100(60), "Gulf", "AE", packs=packs, ships=ships).path("LICENCE")
    assert small.open and small.presumption == "approval"


def test_shipments_before_2025_do_not_count_toward_the_allocation(packs: PackRegistry) -> None:
    ships = [ShipmentRef(date(2024, 12, 31), "Other", "AE", 789_000_000, "LICENCE")]
    assert tier2_allocation(packs, "AE", AFTER, ships)["used_tpp"] == 0


def test_aia_reporting_threshold_253m_tpp(packs: PackRegistry) -> None:
    ships = [ShipmentRef(date(2025, 5, 20), "Acme", "DE", 250_000_000, "AIA")]
    res = run(h100(200), "Acme", "DE", packs=packs, ships=ships, aia_certified=True).path("AIA")
    assert res.open and any("reporting required" in c for c in res.conditions)
    below = run(h100(100), "Acme", "DE", packs=packs, aia_certified=True).path("AIA")
    assert not any("reporting required" in c for c in below.conditions)


UVEU = AuthorizationRef("ACME-UVEU-1", "uveu", "Acme", date(2025, 2, 1),
                        locations={"DE": None, "MY": None, "IN": date(2025, 5, 1)}, headroom_tpp=100_000_000)


@pytest.mark.parametrize(("country", "on", "consignee", "is_open", "fragment"), [
    ("MY", AFTER, "Acme", True, "holds UVEU ACME-UVEU-1"),
    ("IN", date(2025, 10, 27), "Acme", False, "exports may start 180 days later, on 2025-10-28"),
    ("IN", date(2025, 10, 28), "Acme", True, "holds UVEU"),
    ("AE", AFTER, "Acme", False, "file the 180-day new-location notice"),
    ("DE", date(2025, 1, 20), "Acme", False, "not in force"),
    ("DE", AFTER, "Gulf", False, "holds no UVEU"),
])
def test_uveu_path(packs: PackRegistry, country: str, on: date, consignee: str, is_open: bool, fragment: str) -> None:
    res = run(h100(64), consignee, country, on, packs=packs, auths=[UVEU]).path("UVEU")
    assert res.open is is_open, res.reasons
    assert fragment in " ".join(res.reasons)


def test_uveu_closed_when_caps_headroom_is_short(packs: PackRegistry) -> None:
    res = run(h100(8000), "Acme", "DE", packs=packs, auths=[UVEU]).path("UVEU")
    assert not res.open and "exceeds the caps headroom" in " ".join(res.reasons)


def test_uveu_operator_must_hold_its_own_uveu(packs: PackRegistry) -> None:
    res = run(h100(8), "Acme", "DE", packs=packs, auths=[UVEU], operator="OpcoJP").path("UVEU")
    assert not res.open and "must itself hold a UVEU" in " ".join(res.reasons)


def test_nveu_path_is_per_country(packs: PackRegistry) -> None:
    nveu = AuthorizationRef("GULF-NVEU-AE", "nveu", "Gulf", date(2025, 2, 1), country="AE")
    assert run(h100(64), "Gulf", "AE", packs=packs, auths=[nveu]).path("NVEU").open
    other = run(h100(64), "Gulf", "SA", packs=packs, auths=[nveu]).path("NVEU")
    assert not other.open and "covers AE, not SA" in " ".join(other.reasons)
    moved = run(h100(64), "Gulf", "SA", packs=packs, auths=[nveu], kind="reexport").path("NVEU")
    assert "§ 748.15(d)(2)(iii)" in " ".join(moved.reasons)


def test_items_not_3a090a_need_no_advanced_computing_path(packs: PackRegistry) -> None:
    rep = run((ItemLine("T4", 8, 1040.0, "not-3A090"),), "Sino", "CN", packs=packs)
    assert rep.open_paths == ["NLR"] and rep.controlled_tpp == 0


def test_parse_items() -> None:
    assert parse_items("H100 SXM x 2048, MI300X × 16") == [("H100 SXM", 2048), ("MI300X", 16)]
    for bad in ("H100", "H100 x 0", ""):
        with pytest.raises(PolicyError, match="--items"):
            parse_items(bad)


def test_bad_inputs_name_the_field(packs: PackRegistry) -> None:
    with pytest.raises(PolicyError, match="--kind"):
        run(h100(1), "Acme", "DE", packs=packs, kind="lease")
    with pytest.raises(NotInEffect, match="--date"):
        run(h100(1), "Acme", "DE", date(2024, 6, 1), packs=packs)
    with pytest.raises(PartyError, match="not registered"):
        run(h100(1), "Nobody", "DE", packs=packs)


@pytest.mark.parametrize("consignee,country", [("Acme", "HK"), ("HKSub", "SG")])
def test_before_compliance_hong_kong_is_in_the_baseline_scope_as_china(
    packs: PackRegistry, consignee: str, country: str,
) -> None:
    # destination-equivalences treats Hong Kong as China (D:1, D:4, D:5): a destination there, or an ultimate
    # parent headquartered there, needs a licence under the pre-IFR scope just as China does.
    parties = {**PARTIES, "HKCo": PartyRef("HKCo", "HK"), "HKSub": PartyRef("HKSub", "SG", "HKCo")}
    r = find_paths(packs, parties, Proposal("export", h100(8), consignee, country, BEFORE))
    assert r.licence_required and "treated as CN" in r.licence_basis
    nlr = r.path("NLR").to_dict()
    assert not nlr["open"] and nlr["confirmed"] is False


def l40(n: int) -> tuple[ItemLine, ...]:
    return (ItemLine("L40", n, 2896.0, "3A090.b"),)


def test_3a090b_chips_to_the_uae_need_a_licence_the_diffusion_paths_do_not_open(packs: PackRegistry) -> None:
    # CCL: 3A090.b "To or within the United Arab Emirates or destinations specified in Country Groups D:1, D:4,
    # and D:5 ... excluding any destination also specified in Country Groups A:5 or A:6".
    # The licence is required; of the exceptions only ACA covers .b items to a D:1/D:4 destination (seed 000's
    # table: "ACM and ACA"; ACM needs a development/production/storage end use), none of AIA, LPP or a VEU.
    r = run(l40(10), "Gulf", "AE", packs=packs)
    assert r.licence_required and r.open_paths == ["ACA", "LICENCE"]
    assert "3A090.b: licence required" in r.licence_basis and "United Arab Emirates is named in licence-3a090b" \
        in r.licence_basis


def test_3a090b_chips_to_china_or_to_a_d5_headquartered_consignee_elsewhere_need_a_licence(
    packs: PackRegistry,
) -> None:
    assert run(l40(1), "Sino", "CN", packs=packs).licence_required
    r = run(l40(1), "Sino", "DE", packs=packs)
    assert r.licence_required and "headquartered in CN" in r.licence_basis


def test_3a090b_chips_to_a_tier1_destination_for_a_tier1_consignee_need_no_licence(packs: PackRegistry) -> None:
    r = run(l40(10), "Acme", "US", packs=packs)
    assert not r.licence_required and r.open_paths == ["NLR"] and "outside the licence scope" in r.licence_basis
