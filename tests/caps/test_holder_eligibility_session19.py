"""§ 748.15(b)(2): an authorization whose holder is no longer eligible on a date covers no chip on it."""

from __future__ import annotations

from datetime import date

from policies.caps import Authorization, authorization_caps, holder_ineligible
from policies.packs import PackRegistry
from policies.parties import PartyRef
from tests.caps.test_caps_core import H100, PARTIES, pl

D = date(2025, 6, 1)


def _with(**changes: PartyRef) -> dict[str, PartyRef]:
    return {**PARTIES, **changes}


def _by_id(caps):  # type: ignore[no-untyped-def]
    return {c.id: c for c in caps}


def test_an_nveu_whose_holder_moved_its_headquarters_to_d5_is_over_a_limit_of_zero(packs: PackRegistry) -> None:
    auth = Authorization("gulf-nveu", "nveu", "Nordic AI", "AE")
    fleet = [pl("AE", 10)]
    assert "nveu.holder_eligibility" not in _by_id(authorization_caps(packs, PARTIES, auth, fleet, D))
    caps = _by_id(authorization_caps(packs, _with(**{"Nordic AI": PartyRef("Nordic AI", "CN")}), auth, fleet, D))
    c = caps["nveu.holder_eligibility"]
    assert c.binding and not c.ok and c.limit == 0 and c.numerator == 10 * H100
    assert c.headroom == -10 * H100
    assert "Macau or Country Group D:5" in c.note and "748.15(b)(2)" in c.note


def test_an_nveu_holder_whose_ultimate_parent_is_in_d5_is_not_eligible(packs: PackRegistry) -> None:
    parties = _with(**{"Nordic AI": PartyRef("Nordic AI", "SE", parent="Dragon"), "Dragon": PartyRef("Dragon", "CN")})
    why = holder_ineligible(packs, parties, "Nordic AI", "nveu", D)
    assert why is not None and "Dragon" in why
    # No chips held: nothing over the limit, but nothing fits either (the limit is zero).
    c = _by_id(authorization_caps(packs, parties, Authorization("g", "nveu", "Nordic AI", "AE"), [], D))[
        "nveu.holder_eligibility"]
    assert c.ok and c.headroom == 0


def test_a_uveu_whose_holder_and_parent_left_supp5a_is_over_a_limit_of_zero(packs: PackRegistry) -> None:
    auth = Authorization("nordic-uveu", "uveu", "Nordic AI")
    fleet = [pl("SE", 90), pl("AE", 5), pl("SG", 5)]
    parties = _with(**{"Nordic AI": PartyRef("Nordic AI", "AE")})
    c = _by_id(authorization_caps(packs, parties, auth, fleet, D))["uveu.holder_eligibility"]
    assert not c.ok and c.numerator == 100 * H100 and c.view == "owned"
    assert "Supp. 5(a)" in c.note


def test_a_uveu_holder_outside_supp5a_with_its_ultimate_parent_inside_stays_eligible(packs: PackRegistry) -> None:
    # "headquartered in, or have their ultimate parent company headquartered in" Supp. 5(a).
    assert holder_ineligible(packs, PARTIES, "Acme Gulf", "uveu", D) is None
    auth = Authorization("gulf-uveu", "uveu", "Acme Gulf")
    assert "uveu.holder_eligibility" not in _by_id(authorization_caps(packs, PARTIES, auth, [pl("AE", 1)], D))


def test_before_the_eligibility_rule_took_effect_no_holder_is_refused(packs: PackRegistry) -> None:
    parties = _with(**{"Nordic AI": PartyRef("Nordic AI", "CN")})
    assert holder_ineligible(packs, parties, "Nordic AI", "nveu", date(2025, 1, 12)) is None
    assert holder_ineligible(packs, parties, "Nordic AI", "nveu", date(2025, 1, 13)) is not None


# ----------------------------------------------------------------------------- explained from the store


def test_the_explanation_of_an_ineligible_nveu_lists_what_it_holds_in_its_country(db_url: str) -> None:
    from sqlmodel import select

    from agent import caps as svc
    from agent import parties as party_svc
    from agent.packs import registry
    from agent.store import session_scope
    from agent.store.tables.core import Holding, Party, Site, utc_today
    from tests.caps.conftest import T0, seed_fleet

    seed_fleet(db_url)
    with session_scope(db_url) as s:
        falcon = s.exec(select(Party).where(Party.name == "Falcon")).one()
        sin = s.exec(select(Site).where(Site.name == "sin")).one()
        # Falcon's chips in Singapore are no part of its UAE NVEU.
        s.add(Holding(source="test", external_id="sg", site_id=sin.id, accelerator="h100-sxm", count=5,
                      owner_id=falcon.id, operator_id=falcon.id, first_seen=T0))
        party_svc.add_party(s, "Falcon", "CN")
    with session_scope(db_url) as s:
        d = svc.explain(s, registry(), "falcon-ae", "nveu.holder_eligibility", utc_today(), 100, 0)
    assert d["numerator_tpp"] == 100 * H100
    assert [h["country"] for h in d["holdings"]["items"]] == ["AE"]
    assert all(p["in_numerator"] for p in d["explanation"]["contributors"])


def test_the_explanation_of_an_ineligible_uveu_lists_what_its_group_owns(db_url: str) -> None:
    from agent import caps as svc
    from agent import parties as party_svc
    from agent.packs import registry
    from agent.store import session_scope
    from agent.store.tables.core import utc_today
    from tests.caps.conftest import seed_fleet

    seed_fleet(db_url)
    with session_scope(db_url) as s:
        party_svc.add_party(s, "Aurora", "AE")  # no parent: neither it nor its ultimate parent is in Supp. 5(a)
    with session_scope(db_url) as s:
        d = svc.explain(s, registry(), "aurora", "uveu.holder_eligibility", utc_today(), 100, 0)
    # 900 in the US owned by Aurora, 30 + 70 by its subsidiary Aurora EU: the group's owned base.
    assert d["numerator_tpp"] == 1000 * H100
    assert sum(h["tpp"] for h in d["holdings"]["items"]) == d["numerator_tpp"]
    assert all(p["in_numerator"] for p in d["explanation"]["contributors"])
