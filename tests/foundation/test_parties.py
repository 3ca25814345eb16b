"""Effective tier: the stricter of a party's HQ and its ultimate parent's HQ (red flag 28)."""

from __future__ import annotations

from datetime import date

import pytest

from policies.errors import PartyError, UnknownCountry
from policies.packs import PackRegistry
from policies.parties import PartyRef, effective_tier

D = date(2025, 6, 1)


def refs(*items: tuple[str, str, str | None]) -> dict[str, PartyRef]:
    return {n: PartyRef(n, hq, p) for n, hq, p in items}


def test_tier1_subsidiary_of_tier3_parent_is_tier3(packs: PackRegistry) -> None:
    r = refs(("Parent", "CN", None), ("Mid", "SG", "Parent"), ("Sub", "DE", "Mid"))
    eff = effective_tier(packs, r, "Sub", D)
    assert eff.tier == 3 and eff.ultimate_parent == "Parent" and eff.chain == ("Sub", "Mid", "Parent")


def test_tier2_subsidiary_of_us_parent_is_tier2(packs: PackRegistry) -> None:
    r = refs(("US Co", "US", None), ("Gulf Co", "AE", "US Co"))
    assert effective_tier(packs, r, "Gulf Co", D).tier == 2


def test_tier1_party_with_tier1_parent_is_tier1(packs: PackRegistry) -> None:
    r = refs(("JP Co", "JP", None), ("UK Co", "GB", "JP Co"))
    assert effective_tier(packs, r, "UK Co", D).tier == 1


def test_ownership_cycle_is_detected(packs: PackRegistry) -> None:
    r = refs(("A", "US", "B"), ("B", "US", "A"))
    with pytest.raises(PartyError, match="ownership cycle A -> B -> A"):
        effective_tier(packs, r, "A", D)


def test_unknown_party_says_how_to_add_it(packs: PackRegistry) -> None:
    with pytest.raises(PartyError, match="veuctl parties add Nobody --hq CC"):
        effective_tier(packs, {}, "Nobody", D)


def test_cambodian_parent_changes_tier_on_2026_02_03(packs: PackRegistry) -> None:
    r = refs(("KH Co", "KH", None), ("DE Sub", "DE", "KH Co"))
    assert effective_tier(packs, r, "DE Sub", date(2026, 2, 2)).tier == 3
    assert effective_tier(packs, r, "DE Sub", date(2026, 2, 3)).tier == 2


def test_unknown_headquarters_country_of_an_ultimate_parent_names_the_party_and_field(packs: PackRegistry) -> None:
    r = refs(("Parent", "Atlantis", None), ("Sub", "DE", "Parent"))
    with pytest.raises(UnknownCountry, match=r"^party 'Parent': hq: 'Atlantis' is not an ISO 3166"):
        effective_tier(packs, r, "Sub", D)


def test_registering_a_party_with_an_unknown_headquarters_names_the_hq_option(db_url: str) -> None:
    from agent import parties as svc
    from agent.store import session_scope

    with pytest.raises(UnknownCountry, match=r"^--hq: 'Atlantis' is not an ISO 3166"), session_scope(db_url) as s:
        svc.add_party(s, "Bad", "Atlantis")


@pytest.mark.parametrize("name", ["Acme\u202eduolC", "Ac\u200bme Cloud", "Acme\u2028Cloud", "Acme\x7fCloud"])
def test_a_party_name_that_could_display_as_another_partys_is_refused(db_url: str, name: str) -> None:
    from agent import parties as svc
    from agent.store import session_scope
    from policies.errors import PolicyError

    with pytest.raises(PolicyError, match=r"^name: .*printable"), session_scope(db_url) as s:
        svc.add_party(s, name, "US")
