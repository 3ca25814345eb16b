"""The caps arithmetic against the primary text: Supp. 10 ¶6 (UVEU), § 748.15 Table 1 (NVEU),
§ 742.6(b)(10)(iii) (country allocation) and § 740.29 (LPP), with the edges exact."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.caps import (
    Authorization,
    Placement,
    Shipment,
    authorization_caps,
    change_placements,
    corporate_group,
    exact,
    fit_range,
    installed_on,
    lpp_caps,
    lpp_notice_required,
    nveu_caps,
    tier2_allocation_caps,
    uveu_caps,
)
from policies.errors import PolicyError
from policies.packs import PackRegistry
from policies.parties import PartyRef

D = date(2025, 6, 1)
H100 = Fraction(15832)

PARTIES = {
    "Acme Cloud": PartyRef("Acme Cloud", "US"),
    "Acme EU": PartyRef("Acme EU", "DE", parent="Acme Cloud"),
    "Acme Gulf": PartyRef("Acme Gulf", "AE", parent="Acme EU"),
    "Acme Sister": PartyRef("Acme Sister", "FR", parent="Acme Cloud"),
    "Nordic AI": PartyRef("Nordic AI", "SE"),
    "Nordic Sub": PartyRef("Nordic Sub", "NO", parent="Nordic AI"),
    "Stranger": PartyRef("Stranger", "GB"),
}


def pl(country: str, n: int | Fraction, owner: str = "Nordic AI", operator: str | None = None,
       tpp: Fraction = H100, eccn: str = "3A090.a", site: str | None = None) -> Placement:
    return Placement(site or f"dc-{country}", country, "H100", Fraction(n), tpp, eccn, owner, operator or owner)


def by_id(caps):  # type: ignore[no-untyped-def]
    return {c.id: c for c in caps}


NORDIC = Authorization("nordic-uveu", "uveu", "Nordic AI")
ACME = Authorization("acme-uveu", "uveu", "Acme Cloud")


def test_uveu_exactly_25_percent_outside_supp5a_is_within_the_limit(packs: PackRegistry) -> None:
    # 75 in Tier 1, 25 outside (split so that no single country exceeds 7%): 25% exactly is "not more than".
    fleet = [pl("SE", 75), pl("AE", 7), pl("SG", 7), pl("IN", 7), pl("BR", 4)]
    c = by_id(uveu_caps(packs, PARTIES, NORDIC, fleet, D))["uveu.outside_tier1.owned"]
    assert c.value == Fraction(1, 4) and c.ok and c.headroom == 0


def test_uveu_one_chip_beyond_25_percent_outside_supp5a_breaches(packs: PackRegistry) -> None:
    fleet = [pl("SE", 75), pl("AE", 7), pl("SG", 7), pl("IN", 7), pl("BR", 5)]
    c = by_id(uveu_caps(packs, PARTIES, NORDIC, fleet, D))["uveu.outside_tier1.owned"]
    assert not c.ok and c.value == Fraction(26, 101)
    assert c.headroom is not None and c.headroom < 0


def test_uveu_exactly_7_percent_in_a_single_non_supp5a_country_is_within_the_limit(packs: PackRegistry) -> None:
    caps = by_id(uveu_caps(packs, PARTIES, NORDIC, [pl("SE", 93), pl("AE", 7)], D))
    assert caps["uveu.single_country.AE.owned"].value == Fraction(7, 100)
    assert caps["uveu.single_country.AE.owned"].ok
    caps = by_id(uveu_caps(packs, PARTIES, NORDIC, [pl("SE", 92), pl("AE", 8)], D))
    assert not caps["uveu.single_country.AE.owned"].ok


def test_uveu_7_percent_cap_applies_to_tier1_countries_never(packs: PackRegistry) -> None:
    caps = by_id(uveu_caps(packs, PARTIES, NORDIC, [pl("SE", 10), pl("DE", 80), pl("US", 10)], D))
    assert not [k for k in caps if k.startswith("uveu.single_country")]
    assert all(c.ok for c in caps.values())


def test_us_headquartered_uveu_exactly_50_percent_outside_the_us_is_within_the_limit(packs: PackRegistry) -> None:
    caps = by_id(uveu_caps(packs, PARTIES, ACME, [pl("US", 50, "Acme Cloud"), pl("DE", 50, "Acme EU")], D))
    assert caps["uveu.outside_us.owned"].value == Fraction(1, 2) and caps["uveu.outside_us.owned"].ok
    caps = by_id(uveu_caps(packs, PARTIES, ACME, [pl("US", 49, "Acme Cloud"), pl("DE", 51, "Acme EU")], D))
    assert not caps["uveu.outside_us.owned"].ok


def test_a_us_territory_is_the_united_states_for_the_uveu_caps(packs: PackRegistry) -> None:
    # § 772.1: the United States includes its territories; Puerto Rico is neither Tier 2 nor "outside the US".
    from policies.jurisdictions import tier

    assert tier(packs, "PR", D).tier == 1 and "treated as US" in tier(packs, "PR", D).basis
    caps = by_id(uveu_caps(packs, PARTIES, ACME, [pl("US", 40, "Acme Cloud"), pl("PR", 60, "Acme Cloud")], D))
    assert caps["uveu.outside_us.owned"].value == 0 and caps["uveu.outside_tier1.owned"].value == 0
    assert not any(c.startswith("uveu.single_country.PR") for c in caps)


def test_non_us_uveu_has_no_50_percent_us_cap(packs: PackRegistry) -> None:
    caps = by_id(uveu_caps(packs, PARTIES, NORDIC, [pl("SE", 100)], D))
    assert "uveu.outside_us.owned" not in caps


def test_uveu_base_counts_parents_and_subsidiaries_but_not_sister_companies(packs: PackRegistry) -> None:
    assert set(corporate_group(PARTIES, "Acme EU")) == {"Acme EU", "Acme Cloud", "Acme Gulf"}
    auth = Authorization("acme-eu", "uveu", "Acme EU")
    fleet = [pl("DE", 90, "Acme Cloud"), pl("AE", 10, "Acme Gulf"), pl("FR", 1000, "Acme Sister")]
    c = by_id(uveu_caps(packs, PARTIES, auth, fleet, D))["uveu.single_country.AE.owned"]
    assert c.denominator == 100 * H100 and c.value == Fraction(1, 10)


def test_uveu_measures_owned_and_operated_views_and_the_pack_names_the_binding_one(packs: PackRegistry) -> None:
    # Nordic operates chips a stranger owns in the UAE: the operated view breaches, the owned one is binding.
    fleet = [pl("SE", 93), pl("AE", 40, owner="Stranger", operator="Nordic AI")]
    caps = by_id(uveu_caps(packs, PARTIES, NORDIC, fleet, D))
    assert caps["uveu.outside_tier1.owned"].binding and caps["uveu.outside_tier1.owned"].ok
    assert not caps["uveu.outside_tier1.operated"].binding and not caps["uveu.outside_tier1.operated"].ok
    assert packs.value("uveu-geographic-allocation", "base", D) == "owned"


def test_only_chips_at_or_above_3a090a_count(packs: PackRegistry) -> None:
    fleet = [pl("SE", 93), pl("AE", 7), pl("AE", 1000, eccn="3A090.b"), pl("AE", 1000, eccn="not-3A090"),
             pl("SE", 1, eccn="4A090.a")]
    c = by_id(uveu_caps(packs, PARTIES, NORDIC, fleet, D))["uveu.single_country.AE.owned"]
    assert c.numerator == 7 * H100 and c.denominator == 101 * H100


def test_uveu_data_centre_in_a_tier3_destination_is_never_within_the_rule(packs: PackRegistry) -> None:
    caps = by_id(uveu_caps(packs, PARTIES, NORDIC, [pl("SE", 1000), pl("CN", 1)], D))
    assert not caps["uveu.excluded_locations.owned"].ok


def test_nveu_quarter_boundaries_follow_table_1(packs: PackRegistry) -> None:
    auth = Authorization("gulf-nveu", "nveu", "Nordic AI", "AE")
    # 633,000,000 TPP in 2025 Q1; 949,500,000 from 2025-04-01.
    at_q1 = [pl("AE", Fraction(633_000_000), tpp=Fraction(1))]
    assert nveu_caps(packs, auth, at_q1, date(2025, 3, 31))[0].ok
    over = [pl("AE", Fraction(633_000_001), tpp=Fraction(1))]
    assert not nveu_caps(packs, auth, over, date(2025, 3, 31))[0].ok
    c = nveu_caps(packs, auth, over, date(2025, 4, 1))[0]
    assert c.ok and c.limit == 949_500_000
    assert nveu_caps(packs, auth, over, date(2026, 12, 31))[0].limit == 4_272_750_000
    assert nveu_caps(packs, auth, over, date(2027, 1, 1))[0].limit == 5_064_000_000


def test_a_licence_specific_nveu_cap_governs_its_own_authorization_only() -> None:
    from pathlib import Path

    from agent.packs import load_registry
    from policies.caps import licence_cap_id

    samples = Path(__file__).resolve().parents[2] / "policies" / "samples" / "valid"
    reg = load_registry([samples])
    on = date(2026, 6, 1)
    licensed = Authorization("Acme Gulf NVEU", "nveu", "Nordic AI", "AE")
    other = Authorization("gulf-nveu", "nveu", "Stranger", "AE")
    assert licence_cap_id(licensed.name) == "nveu-licence-acme-gulf-nveu"
    mine = nveu_caps(reg, licensed, [], on)[0]
    assert mine.limit == 2_000_000_000 and "AE-0001" in mine.provisions[0].citation
    assert nveu_caps(reg, other, [], on)[0].limit == 2_690_250_000  # Table 1, not the other holder's licence


def test_nveu_counts_only_its_country_and_chips_it_owns_or_operates(packs: PackRegistry) -> None:
    auth = Authorization("gulf-nveu", "nveu", "Nordic AI", "AE")
    fleet = [pl("AE", 10), pl("AE", 5, owner="Stranger", operator="Nordic AI"), pl("AE", 100, owner="Stranger"),
             pl("SG", 100)]
    c = nveu_caps(packs, auth, fleet, D)[0]
    assert c.numerator == 15 * H100


def test_nveu_before_the_table_has_no_allocation_and_nothing_fits(packs: PackRegistry) -> None:
    auth = Authorization("gulf-nveu", "nveu", "Nordic AI", "AE")
    c = nveu_caps(packs, auth, [], date(2028, 1, 1))[0]
    assert c.limit is None and not c.ok


def test_nveu_without_a_destination_is_rejected(packs: PackRegistry) -> None:
    with pytest.raises(PolicyError, match="--country"):
        authorization_caps(packs, PARTIES, Authorization("x", "nveu", "Nordic AI"), [], D)


def ship(day: date, dest: str, tpp: int, via: str = "licence", consignee: str = "Nordic AI",
         eccn: str = "3A090.a") -> Shipment:
    return Shipment(None, day, consignee, dest, "H100", Fraction(1), Fraction(tpp), eccn, via)


def test_tier2_country_allocation_is_cumulative_over_2025_to_2027_and_ignores_lpp_and_veu(
    packs: PackRegistry,
) -> None:
    ledger = [ship(date(2024, 12, 31), "AE", 500_000_000), ship(date(2025, 1, 1), "AE", 400_000_000),
              ship(date(2027, 12, 31), "AE", 390_000_000), ship(date(2026, 1, 1), "AE", 900_000_000, via="lpp"),
              ship(date(2026, 1, 1), "AE", 900_000_000, via="nveu")]
    c = by_id(tier2_allocation_caps(packs, ledger, date(2027, 12, 31)))["tier2.country_allocation.AE"]
    assert c.numerator == 790_000_000 and c.ok and c.headroom == 0
    c = by_id(tier2_allocation_caps(packs, ledger, date(2027, 12, 30)))["tier2.country_allocation.AE"]
    assert c.numerator == 400_000_000
    ledger.append(ship(date(2027, 6, 1), "AE", 1))
    assert not by_id(tier2_allocation_caps(packs, ledger, date(2027, 12, 31)))["tier2.country_allocation.AE"].ok


def test_tier2_allocation_does_not_apply_to_tier1_or_tier3_destinations(packs: PackRegistry) -> None:
    ledger = [ship(D, "DE", 10**12), ship(D, "CN", 10**12)]
    assert tier2_allocation_caps(packs, ledger, D) == []


def test_lpp_limit_is_per_calendar_year_per_ultimate_consignee(packs: PackRegistry) -> None:
    ledger = [ship(date(2025, 12, 31), "AE", 26_900_000, "lpp", "Acme Gulf"),
              ship(date(2026, 1, 1), "AE", 20_000_000, "lpp", "Acme EU"),
              ship(date(2026, 6, 1), "IN", 6_900_000, "lpp", "Acme Gulf")]
    c25 = by_id(lpp_caps(packs, PARTIES, ledger, date(2025, 12, 31)))["lpp.consignee.Acme Cloud"]
    assert c25.ok and c25.numerator == 26_900_000
    c26 = by_id(lpp_caps(packs, PARTIES, ledger, date(2026, 12, 31)))["lpp.consignee.Acme Cloud"]
    assert c26.ok and c26.numerator == 26_900_000 and c26.headroom == 0
    ledger.append(ship(date(2026, 7, 1), "IN", 1, "lpp", "Acme Sister"))
    assert not by_id(lpp_caps(packs, PARTIES, ledger, date(2026, 12, 31)))["lpp.consignee.Acme Cloud"].ok


def test_lpp_shipment_at_3_2m_tpp_needs_prior_notice(packs: PackRegistry) -> None:
    assert lpp_notice_required(packs, ship(D, "AE", 3_200_000, "lpp"))
    assert not lpp_notice_required(packs, ship(D, "AE", 3_199_999, "lpp"))


def test_installed_base_as_of_a_date_uses_first_seen_and_retired_at() -> None:
    first = datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert not installed_on(first, None, date(2025, 5, 31))
    assert installed_on(first, None, date(2025, 6, 1))
    assert installed_on(first, datetime(2025, 6, 2, 0, 0, 1, tzinfo=UTC), date(2025, 6, 1))
    assert not installed_on(first, datetime(2025, 6, 1, 23, tzinfo=UTC), date(2025, 6, 1))


def test_a_holding_retired_at_the_next_midnight_was_installed_all_of_that_day() -> None:
    # As the inventory reads its history (agent.inventory.instant_of): the day's last microsecond decides.
    first = datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert installed_on(first, datetime(2025, 6, 2, 0, tzinfo=UTC), date(2025, 6, 1))
    assert not installed_on(first, datetime(2025, 6, 1, 23, 59, 59, 999999, tzinfo=UTC), date(2025, 6, 1))
    assert not installed_on(datetime(2025, 6, 2, 0, tzinfo=UTC), None, date(2025, 6, 1))
    assert installed_on(datetime(2025, 6, 1, 23, 59, 59, 999999, tzinfo=UTC), None, date(2025, 6, 1))


def test_float_inputs_become_exact_values() -> None:
    assert exact(989.5) * 16 == 15832
    assert exact(1 / 7) == Fraction(1, 7)
    assert exact(0.07) == Fraction(7, 100)


def test_max_fit_outside_tier1_is_the_largest_n_within_25_and_7_percent(packs: PackRegistry) -> None:
    fleet = [pl("SE", 1000)]
    delta = [pl("AE", 1)]
    before = uveu_caps(packs, PARTIES, NORDIC, fleet, D, extra_countries=["AE"])
    unit = uveu_caps(packs, PARTIES, NORDIC, change_placements(fleet, delta, 1), D, extra_countries=["AE"])
    r = fit_range(before, unit)
    # 7% of (1000 + N) >= N  <=>  N <= 75.26...
    assert r.low == 0 and r.high == 75 and r.binding == "uveu.single_country.AE.owned"


def test_adding_inside_tier1_is_never_limited_by_uveu_caps(packs: PackRegistry) -> None:
    fleet = [pl("SE", 90), pl("AE", 10)]
    before = uveu_caps(packs, PARTIES, NORDIC, fleet, D)
    unit = uveu_caps(packs, PARTIES, NORDIC, change_placements(fleet, [pl("SE", 1)], 1), D)
    r = fit_range(before, unit)
    # 10 / (100 + N) <= 7%  <=>  N >= 42.86: a breach is cured from 43 chips in Tier 1 on.
    assert r.low == 43 and r.high is None


@settings(max_examples=20, deadline=None)
@given(
    t1=st.integers(0, 40), ae=st.integers(0, 6), sg=st.integers(0, 6),
    where=st.sampled_from(["SE", "AE", "SG", "US", "IN"]), owner=st.sampled_from(["Acme Cloud", "Acme EU"]),
)
def test_closed_form_max_fit_matches_brute_force(  # type: ignore[no-untyped-def]
    packs, t1: int, ae: int, sg: int, where: str, owner: str,
) -> None:
    fleet = [pl("US", t1, "Acme Cloud"), pl("AE", ae, "Acme EU"), pl("SG", sg, "Acme Gulf")]
    delta = [pl(where, 1, owner)]
    extra = [where]

    def ok_at(n: int) -> bool:
        caps = uveu_caps(packs, PARTIES, ACME, change_placements(fleet, delta, n), D, extra)
        return all(c.ok for c in caps if c.binding)

    r = fit_range(uveu_caps(packs, PARTIES, ACME, fleet, D, extra),
                  uveu_caps(packs, PARTIES, ACME, change_placements(fleet, delta, 1), D, extra))
    brute = [n for n in range(0, 110) if ok_at(n)]
    if r.low is None:
        assert brute == []
    else:
        assert brute and brute[0] == r.low
        if r.high is None:
            assert brute[-1] == 109
        else:
            assert brute[-1] == r.high and brute == list(range(r.low, r.high + 1))


def test_norway_is_a_supp5a_destination_so_its_share_is_never_capped_at_7_percent(packs: PackRegistry) -> None:
    # YAML 1.1 reads a bare NO as false; the pack must keep Norway a country code.
    caps = by_id(uveu_caps(packs, PARTIES, NORDIC, [pl("SE", 50), pl("NO", 50)], D))
    assert "uveu.single_country.NO.owned" not in caps
    assert caps["uveu.outside_tier1.owned"].numerator == 0


def test_uveu_headquartered_outside_supp5a_is_not_bound_by_the_25_and_7_percent_caps(packs: PackRegistry) -> None:
    # ¶6: "Only for entities headquartered in countries listed in paragraph (a) ... with UVEU status".
    parties = {**PARTIES, "Gulf Sub": PartyRef("Gulf Sub", "AE", parent="Nordic AI")}
    auth = Authorization("gulf-uveu", "uveu", "Gulf Sub")
    caps = by_id(uveu_caps(packs, parties, auth, [pl("AE", 50, "Gulf Sub"), pl("SE", 50, "Nordic AI")], D))
    c = caps["uveu.single_country.AE.owned"]
    assert not c.ok and not c.binding and "outside Supp. 5(a)" in c.note
    assert caps["uveu.excluded_locations.owned"].binding
