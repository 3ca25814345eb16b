"""Note 1 to 3A090.a: the foundry/OSAT presumption and the three paths that overcome it, by transaction date."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from policies.duediligence import LogicIC, check
from policies.errors import PolicyError
from policies.packs import PackRegistry

# A 5 nm IC the fabricator itself packages in Taiwan and for which it attests the transistor count.
BASE = LogicIC(node_nm=5, non_planar=True, transistors=2.5e10, has_hbm=True, packaging="fabricator",
               packaging_country="TW", count_attested_by="fabricator")


def test_fabricator_packaged_ic_under_30_billion_overcomes_the_presumption_in_2026(packs: PackRegistry) -> None:
    r = check(packs, BASE, date(2026, 6, 1))
    assert r.applies and not r.presumed_3a090a and r.overcome_by == "b-fabricator-packaging"
    assert r.transistor_limit == 3e10


def test_ic_with_80_billion_transistors_and_hbm_is_presumed_3a090a(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, transistors=8e10), date(2026, 6, 1))
    assert r.presumed_3a090a and r.overcome_by is None
    assert "presumed 3A090.a" in r.reason


def test_no_hbm_32_billion_is_presumed_in_2026_but_not_in_2027(packs: PackRegistry) -> None:
    ic = replace(BASE, transistors=3.2e10, has_hbm=False)
    assert check(packs, ic, date(2026, 12, 31)).presumed_3a090a
    r = check(packs, ic, date(2027, 1, 1))
    assert not r.presumed_3a090a and r.transistor_limit == 3.5e10


def test_hbm_keeps_the_30_billion_limit_in_2027(packs: PackRegistry) -> None:
    assert check(packs, replace(BASE, transistors=3.2e10, has_hbm=True), date(2027, 6, 1)).presumed_3a090a


def test_no_hbm_38_billion_is_presumed_in_2027_and_overcome_in_2029(packs: PackRegistry) -> None:
    ic = replace(BASE, transistors=3.8e10, has_hbm=False)
    assert check(packs, ic, date(2027, 6, 1)).presumed_3a090a
    r = check(packs, ic, date(2029, 1, 1))
    assert not r.presumed_3a090a and r.transistor_limit == 4e10


def test_2028_uses_an_unconfirmed_threshold_and_says_so(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, transistors=3.8e10, has_hbm=False), date(2028, 6, 1))
    assert r.presumed_3a090a
    prov = next(p for p in r.to_dict()["provisions"] if p["id"] == "transistor-count-thresholds")
    assert prov["confirmed"] is False and "2028" in prov["unconfirmed_note"]


def test_hbm_unknown_never_gets_the_no_hbm_limit(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, transistors=3.2e10, has_hbm=None), date(2027, 6, 1))
    assert r.presumed_3a090a and "say whether it has HBM" in r.reason + str(r.paths)


def test_end_user_attestation_is_not_sufficient(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, count_attested_by="end-user"), date(2026, 6, 1))
    assert r.presumed_3a090a
    assert any("end user" in p.why for p in r.paths)


def test_unconfirmed_transistor_count_leaves_the_presumption(packs: PackRegistry) -> None:
    assert check(packs, replace(BASE, transistors=None), date(2026, 6, 1)).presumed_3a090a


@pytest.mark.parametrize("where", ["CN", "MO", "HK"])
def test_fabricator_packaging_in_macau_or_d5_does_not_overcome(packs: PackRegistry, where: str) -> None:
    r = check(packs, replace(BASE, packaging_country=where), date(2026, 6, 1))
    assert r.presumed_3a090a
    assert any(p.path == "b-fabricator-packaging" and "excluded" in p.why for p in r.paths)


def test_approved_osat_packaging_overcomes_with_the_count(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, packaging="approved-osat", osat="ACME Packaging", count_attested_by="osat"),
              date(2026, 6, 1))
    assert r.overcome_by == "c-approved-osat"


def test_other_osat_packaging_does_not_overcome(packs: PackRegistry) -> None:
    assert check(packs, replace(BASE, packaging="other-osat"), date(2026, 6, 1)).presumed_3a090a


DESIGNED = replace(BASE, transistors=8e10, designer="Acme AI", designer_status="authorized", designer_hq="US",
                   designer_attestation=True)


def test_authorized_designer_attestation_overcomes_until_2026_12_31(packs: PackRegistry) -> None:
    r = check(packs, DESIGNED, date(2026, 12, 31))
    assert r.overcome_by == "a-designer-attestation"


def test_authorized_designer_after_2026_must_have_applied_for_approval(packs: PackRegistry) -> None:
    r = check(packs, DESIGNED, date(2027, 1, 1))
    assert r.presumed_3a090a
    assert any("applied to become approved" in p.why for p in r.paths)


def test_authorized_status_lapses_180_days_after_the_application(packs: PackRegistry) -> None:
    ic = replace(DESIGNED, designer_applied_for_approval=date(2026, 11, 1))
    assert check(packs, ic, date(2027, 4, 29)).overcome_by == "a-designer-attestation"
    r = check(packs, ic, date(2027, 4, 30))  # 2026-11-01 + 180 days
    assert r.presumed_3a090a and any("lapsed" in p.why for p in r.paths)


def test_designer_headquartered_outside_a1_a5_taiwan_is_not_authorized(packs: PackRegistry) -> None:
    r = check(packs, replace(DESIGNED, designer_hq="CN"), date(2026, 6, 1))
    assert r.presumed_3a090a


def test_taiwan_designer_is_authorized(packs: PackRegistry) -> None:
    assert check(packs, replace(DESIGNED, designer_hq="TW"), date(2026, 6, 1)).overcome_by == "a-designer-attestation"


def test_designer_with_ultimate_parent_in_d5_is_not_authorized(packs: PackRegistry) -> None:
    r = check(packs, replace(DESIGNED, designer_parent_hq="CN"), date(2026, 6, 1))
    assert r.presumed_3a090a and any("ultimate parent" in p.why for p in r.paths)


def test_approved_designer_attestation_overcomes_in_any_year(packs: PackRegistry) -> None:
    ic = replace(DESIGNED, designer_status="approved")
    assert check(packs, ic, date(2029, 6, 1)).overcome_by == "a-designer-attestation"


def test_designer_without_attestation_does_not_overcome(packs: PackRegistry) -> None:
    assert check(packs, replace(DESIGNED, designer_attestation=False), date(2026, 6, 1)).presumed_3a090a


def test_mature_planar_node_is_not_an_applicable_advanced_logic_ic(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, node_nm=28, non_planar=False, transistors=9e10), date(2026, 6, 1))
    assert not r.applies and not r.presumed_3a090a


def test_non_planar_transistors_trigger_even_above_16nm(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, node_nm=22, non_planar=True, transistors=9e10), date(2026, 6, 1))
    assert r.applies and r.presumed_3a090a


def test_16nm_is_at_the_node_threshold(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, node_nm=16, non_planar=False, transistors=9e10), date(2026, 6, 1))
    assert r.applies


def test_presumption_binds_only_fabricators_and_osats(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, transistors=9e10, exporter_role="distributor"), date(2026, 6, 1))
    assert not r.applies and not r.presumed_3a090a


def test_bad_packaging_value_is_a_policy_error(packs: PackRegistry) -> None:
    with pytest.raises(PolicyError, match="packaging"):
        check(packs, replace(BASE, packaging="someone"), date(2026, 6, 1))


def test_authorized_designer_that_applies_after_the_deadline_is_no_longer_authorized(packs: PackRegistry) -> None:
    # Seed 000: a designer that has "not submitted an application ... by" the deadline "will no longer be
    # authorized"; an application made in 2027 does not revive the status for 180 days.
    r = check(packs, replace(DESIGNED, designer_applied_for_approval=date(2027, 2, 1)), date(2027, 3, 1))
    assert r.presumed_3a090a and any("after the 2026-12-31 deadline" in p.why for p in r.paths)
    on_time = replace(DESIGNED, designer_applied_for_approval=date(2026, 12, 31))
    assert check(packs, on_time, date(2027, 3, 1)).overcome_by == "a-designer-attestation"


def test_authorized_designer_deadline_is_april_13_2026_as_published_then_dec_31_2026(packs: PackRegistry) -> None:
    published = packs.provision("authorized-ic-designers", date(2026, 3, 1))
    assert published.value("apply_by") == "2026-04-13" and published.confirmed
    extended = packs.provision("authorized-ic-designers", date(2026, 6, 1))
    assert extended.value("apply_by") == "2026-12-31" and not extended.confirmed
    assert "April 13, 2026" in extended.unconfirmed_note
    assert check(packs, DESIGNED, date(2026, 6, 1)).overcome_by == "a-designer-attestation"


def test_no_hbm_32_billion_stays_presumed_in_2028_which_the_text_gives_no_no_hbm_limit(packs: PackRegistry) -> None:
    r = check(packs, replace(BASE, transistors=3.2e10, has_hbm=False), date(2028, 6, 1))
    assert r.presumed_3a090a and r.transistor_limit == 3e10


def test_before_the_january_31_2025_compliance_date_the_presumption_is_not_yet_required(
    packs: PackRegistry,
) -> None:
    r = check(packs, replace(BASE, transistors=8e10), date(2025, 1, 20))
    assert r.presumed_3a090a and not r.in_compliance_period
    assert "not required until 2025-01-31" in r.reason and r.to_dict()["compliance_from"] == "2025-01-31"
    later = check(packs, replace(BASE, transistors=8e10), date(2025, 1, 31))
    assert later.in_compliance_period and "not required" not in later.reason


def test_designer_located_in_macau_or_d5_is_not_authorized_even_if_headquartered_in_a1(packs: PackRegistry) -> None:
    r = check(packs, replace(DESIGNED, designer_location="MO"), date(2026, 6, 1))
    assert r.presumed_3a090a and any("designer's location" in p.why for p in r.paths)
    with pytest.raises(PolicyError, match="designer_location"):
        check(packs, replace(DESIGNED, designer_location="Atlantis"), date(2026, 6, 1))
