"""Countries, country groups and AI Diffusion tiers, keyed by date."""

from __future__ import annotations

from datetime import date

import pytest

from policies.errors import NotInEffect, UnknownCountry
from policies.jurisdictions import country, groups_of, tier
from policies.packs import PackRegistry

AFTER = date(2025, 6, 1)


@pytest.mark.parametrize("name", ["DE", "deu", "Germany", "germany"])
def test_country_resolves_codes_and_names(name: str) -> None:
    assert country(name).code == "DE"


@pytest.mark.parametrize(("name", "code"), [("Burma", "MM"), ("Macau", "MO"), ("Korea, South", "KR"),
                                            ("Türkiye", "TR"), ("United States", "US"), ("UAE", "AE")])
def test_ear_spellings_resolve(name: str, code: str) -> None:
    assert country(name).code == code


def test_unknown_country_says_what_to_give() -> None:
    with pytest.raises(UnknownCountry, match="'Atlantis' is not an ISO 3166"):
        country("Atlantis")


def test_supp5a_has_19_destinations_including_the_united_states(packs: PackRegistry) -> None:
    members = packs.value("tier1-destinations", "countries", AFTER)
    assert len(members) == 19 and "US" in members


@pytest.mark.parametrize("code", ["US", "GB", "TW", "KR", "JP", "DE", "NZ"])
def test_supp5a_destinations_are_tier1(packs: PackRegistry, code: str) -> None:
    assert tier(packs, code, AFTER).tier == 1


@pytest.mark.parametrize("code", ["CN", "RU", "IR", "KP", "MO", "VE"])
def test_d5_and_macau_are_tier3(packs: PackRegistry, code: str) -> None:
    assert tier(packs, code, AFTER).tier == 3


@pytest.mark.parametrize("code", ["AE", "SA", "IN", "SG", "IL", "BR", "MX", "CH", "PL"])
def test_everything_else_is_tier2(packs: PackRegistry, code: str) -> None:
    assert tier(packs, code, AFTER).tier == 2


def test_cambodia_leaves_d5_on_2026_02_03(packs: PackRegistry) -> None:
    assert tier(packs, "Cambodia", date(2026, 2, 2)).tier == 3
    after = tier(packs, "Cambodia", date(2026, 2, 3))
    assert after.tier == 2 and "D:1" in after.groups and "D:5" not in after.groups


def test_hong_kong_is_treated_as_china_by_default_and_flagged_unconfirmed(packs: PackRegistry) -> None:
    hk = tier(packs, "HK", AFTER)
    assert hk.tier == 3 and "treated as CN" in hk.basis


def test_tier_is_marked_codified_but_not_enforced_after_may_2025(packs: PackRegistry) -> None:
    t = tier(packs, "DE", AFTER)
    assert t.codified and not t.enforced
    assert tier(packs, "DE", date(2025, 3, 1)).enforced


def test_tiers_do_not_exist_before_the_rule(packs: PackRegistry) -> None:
    with pytest.raises(NotInEffect, match="choose a later --as-of"):
        tier(packs, "DE", date(2024, 6, 1))


def test_uae_is_in_a5_in_the_2026_groups(packs: PackRegistry) -> None:
    assert "A:5" in groups_of(packs, "AE", date(2026, 8, 1))
