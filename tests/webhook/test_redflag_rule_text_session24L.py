"""policies.redflag.decide against the text of red flag 28 (15 CFR 732 Supp. 3), the tiers and the rule's dates.

Red flag 28: IaaS "to assist in training an AI model with model weights captured by ECCN 4E091 for an entity
headquartered, or whose ultimate parent is headquartered, in any destination other than those listed in
paragraph (a) of supplement no. 5 to part 740 ... the IaaS provider should inquire if the customer intends to
export the model and if so, apply for a license as required or inform the customer of their obligation to do so
prior to export." Tier 3 is D:5 plus Macau (§ 742.6(b)(10)(iii)(A)(1)); the AI Diffusion rule took effect
2025-01-13, compliance 2025-05-15, and BIS announced non-enforcement on 2025-05-13.
"""

from __future__ import annotations

from datetime import date

import pytest

from agent.kb import catalog
from policies import redflag
from policies.errors import NotInEffect
from policies.packs import PackRegistry, parse_pack
from policies.parties import EffectiveTier, PartyRef, effective_tier
from policies.redflag import CaseState, ChipDemand, Declared, JobRequest, decide

AS_OF = date(2026, 6, 1)
OVER = 2e26  # a lineage of 4E091 size ("10^26 or more operations")


def party(packs: PackRegistry, hq: str, parent_hq: str | None = None, as_of: date = AS_OF, *,
          middle_hq: str | None = None) -> EffectiveTier:
    """Customer C headquartered in ``hq``; its ultimate parent P in ``parent_hq``, through M in ``middle_hq``."""
    parties = {"C": PartyRef("C", hq, "M" if middle_hq else "P" if parent_hq else None)}
    if middle_hq:
        parties["M"] = PartyRef("M", middle_hq, "P" if parent_hq else None)
    if parent_hq:
        parties["P"] = PartyRef("P", parent_hq)
    return effective_tier(packs, parties, "C", as_of)


def job(ops: float | None = OVER, namespace: str = "tenant") -> JobRequest:
    h100 = catalog().accelerator("h100")
    return JobRequest(namespace, "Job", "train", demands=(ChipDemand(h100, 8, "nvidia.com/gpu", "test"),),
                      declared=Declared(model="m", operations=ops, expected_hours=1))


def answered(intent: bool | None, licence: str = "", informed: bool = False, **kw: object) -> CaseState:
    return CaseState(5, "resolved", export_intent=intent, licence_number=licence, customer_informed=informed,
                     resolved_by="officer", **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ who red flag 28 covers


def test_red_flag_28_covers_an_entity_headquartered_in_tier1_whose_ultimate_parent_is_headquartered_in_tier2(
    packs: PackRegistry,
) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "IE", "AE"))
    assert d.code == redflag.HOLD_FOR_INQUIRY and not d.allowed and d.open_case and d.tier == 2


def test_red_flag_28_covers_an_entity_headquartered_in_tier2_whose_ultimate_parent_is_headquartered_in_tier1(
    packs: PackRegistry,
) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE", "US"))
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.tier == 2


def test_red_flag_28_does_not_arise_for_an_entity_and_ultimate_parent_headquartered_in_supp5a(
    packs: PackRegistry,
) -> None:
    # The United States is itself listed in paragraph (a) of Supp. 5 to part 740.
    for hq, parent in (("US", None), ("DE", "US"), ("TW", "JP")):
        d = decide(packs, AS_OF, job(9e26), customer=party(packs, hq, parent))
        assert d.code == redflag.ALLOW and d.allowed and not d.open_case, (hq, parent)


def test_the_ultimate_parent_is_the_top_of_the_chain_not_an_intermediate_parent(packs: PackRegistry) -> None:
    # The rule names the entity's own headquarters and its ultimate parent's; an intermediate owner is neither.
    d = decide(packs, AS_OF, job(), customer=party(packs, "DE", "US", middle_hq="AE"))
    assert d.code == redflag.ALLOW and d.tier == 1
    d = decide(packs, AS_OF, job(), customer=party(packs, "DE", "AE", middle_hq="US"))
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.tier == 2


def test_an_entity_whose_ultimate_parent_is_headquartered_in_d5_is_refused_as_tier3_wherever_it_is_headquartered(
    packs: PackRegistry,
) -> None:
    d = decide(packs, AS_OF, job(1.0), customer=party(packs, "GB", "CN"))
    assert d.code == redflag.DENY_TIER3 and not d.allowed and d.tier == 3
    d = decide(packs, AS_OF, job(1.0), customer=party(packs, "CN", "US"))
    assert d.code == redflag.DENY_TIER3 and d.tier == 3


def test_macau_is_tier3_though_not_in_d5_and_hong_kong_is_treated_as_china(packs: PackRegistry) -> None:
    for hq in ("MO", "HK"):
        assert decide(packs, AS_OF, job(1.0), customer=party(packs, hq)).code == redflag.DENY_TIER3, hq
    assert decide(packs, AS_OF, job(1.0), customer=party(packs, "AE", "MO")).code == redflag.DENY_TIER3


def test_cambodia_is_tier3_until_the_bis_rule_of_2026_02_03_removes_it_from_d5(packs: PackRegistry) -> None:
    before, after = date(2026, 2, 2), date(2026, 2, 3)
    assert decide(packs, before, job(), customer=party(packs, "KH", as_of=before)).code == redflag.DENY_TIER3
    assert decide(packs, after, job(), customer=party(packs, "KH", as_of=after)).code == redflag.HOLD_FOR_INQUIRY


def test_a_tier3_refusal_records_the_may_2025_policy_statement_it_rests_on(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(1.0), customer=party(packs, "CN"))
    ids = {p["id"]: p for p in d.provisions}
    assert "policy-statement-training" in ids and "tier3-destinations" in ids
    # Before the statement (2025-05-13) there was none to cite.
    early = date(2025, 5, 1)
    d = decide(packs, early, job(1.0), customer=party(packs, "CN", as_of=early))
    assert d.code == redflag.DENY_TIER3 and "policy-statement-training" not in {p["id"] for p in d.provisions}


def test_a_model_below_10_to_the_26_operations_is_not_4e091_and_at_10_to_the_26_it_is(packs: PackRegistry) -> None:
    c = party(packs, "AE")
    assert decide(packs, AS_OF, job(9.99e25), customer=c).code == redflag.ALLOW
    assert decide(packs, AS_OF, job(1e26), customer=c).code == redflag.HOLD_FOR_INQUIRY


def test_an_unmapped_namespace_is_refused_and_an_exempt_one_is_exempt_whoever_runs_there(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(1.0), customer=None)
    assert d.code == redflag.DENY_UNKNOWN_CUSTOMER and not d.allowed
    d = decide(packs, AS_OF, job(OVER, namespace="kube-system"), customer=party(packs, "CN"))
    assert d.code == redflag.EXEMPT and d.allowed


# ------------------------------------------------------------------------------------ what closes the inquiry


def test_no_intent_to_export_the_model_closes_the_inquiry(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=answered(False))
    assert d.code == redflag.ALLOW_AFTER_INQUIRY and d.allowed and d.case_id == 5


def test_intent_to_export_with_a_licence_applied_for_closes_the_inquiry(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=answered(True, licence="D123456"))
    assert d.code == redflag.ALLOW_AFTER_INQUIRY and "licence D123456" in d.message


def test_intent_to_export_with_the_customer_informed_of_its_obligation_closes_the_inquiry(
    packs: PackRegistry,
) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=answered(True, informed=True))
    assert d.code == redflag.ALLOW_AFTER_INQUIRY


def test_intent_to_export_without_a_licence_or_informing_the_customer_does_not_close_the_inquiry(
    packs: PackRegistry,
) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=answered(True))
    assert d.code == redflag.HOLD_FOR_INQUIRY and not d.allowed


def test_a_blank_licence_number_is_no_licence(packs: PackRegistry) -> None:
    for blank in (" ", "\t", "  \n"):
        case = answered(True, licence=blank)
        assert not case.satisfied(AS_OF), repr(blank)
        assert decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=case).code == redflag.HOLD_FOR_INQUIRY


def test_informing_the_customer_without_asking_about_export_intent_does_not_close_the_inquiry(
    packs: PackRegistry,
) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=answered(None, informed=True))
    assert d.code == redflag.HOLD_FOR_INQUIRY


def test_an_open_case_holds_and_names_itself(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=CaseState(9, "open"))
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.case_id == 9 and d.open_case


def test_answers_admit_through_their_expiry_day_and_not_after(packs: PackRegistry) -> None:
    c = party(packs, "AE")
    on_last_day = answered(False, expires_on=AS_OF)
    assert decide(packs, AS_OF, job(), customer=c, case=on_last_day).code == redflag.ALLOW_AFTER_INQUIRY
    lapsed = answered(False, expires_on=date(2026, 5, 31))
    d = decide(packs, AS_OF, job(), customer=c, case=lapsed)
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.open_case and d.case_id is None  # a new case, not the old
    expired = CaseState(5, "expired", export_intent=False)
    assert decide(packs, AS_OF, job(), customer=c, case=expired).code == redflag.HOLD_FOR_INQUIRY


def test_answers_recorded_after_the_decision_day_were_not_on_record_that_day(packs: PackRegistry) -> None:
    later = answered(False, resolved_on=date(2026, 6, 2))
    assert decide(packs, AS_OF, job(), customer=party(packs, "AE"), case=later).code == redflag.HOLD_FOR_INQUIRY


def test_a_tier3_entity_is_refused_even_with_an_answered_inquiry(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "CN"), case=answered(True, licence="D1"))
    assert d.code == redflag.DENY_TIER3


def test_a_job_below_the_threshold_needs_no_inquiry_answered_or_not(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(1e24), customer=party(packs, "AE"), case=answered(True))
    assert d.code == redflag.ALLOW and not d.open_case


# ------------------------------------------------------------------------------------ modes


def test_warn_admits_a_hold_with_a_warning_and_still_asks_for_the_case(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"), mode="warn", case=CaseState(4, "open"))
    assert d.allowed and d.code == redflag.HOLD_FOR_INQUIRY and d.open_case
    assert d.warnings and d.warnings[-1].startswith("veu-governor HOLD_FOR_INQUIRY (case 4)")


def test_audit_admits_every_refusal_without_a_warning(packs: PackRegistry) -> None:
    for c, code in ((party(packs, "AE"), redflag.HOLD_FOR_INQUIRY), (party(packs, "CN"), redflag.DENY_TIER3),
                    (None, redflag.DENY_UNKNOWN_CUSTOMER)):
        d = decide(packs, AS_OF, job(), customer=c, mode="audit")
        assert d.allowed and d.code == code and not d.warnings and d.mode == "audit"


# ------------------------------------------------------------------------------------ the rule's dates


def test_before_the_ai_diffusion_rule_took_effect_on_2025_01_13_there_is_no_red_flag_28(packs: PackRegistry) -> None:
    with pytest.raises(NotInEffect, match="2025-01-12"):
        decide(packs, date(2025, 1, 12), job(), customer=None)
    with pytest.raises(NotInEffect, match="--as-of"):
        party(packs, "AE", as_of=date(2025, 1, 12))


def test_between_the_effective_date_and_the_2025_05_15_compliance_date_a_hold_is_a_warning(
    packs: PackRegistry,
) -> None:
    for day in (date(2025, 1, 13), date(2025, 5, 14)):
        d = decide(packs, day, job(), customer=party(packs, "AE", as_of=day))
        assert d.code == redflag.HOLD_FOR_INQUIRY and d.allowed and d.mode == "warn" and d.open_case
        assert any("compliance begins 2025-05-15" in line for line in d.explanation)
    d = decide(packs, date(2025, 5, 15), job(), customer=party(packs, "AE", as_of=date(2025, 5, 15)))
    assert d.code == redflag.HOLD_FOR_INQUIRY and not d.allowed and d.mode == "enforce"


def test_after_the_may_2025_non_enforcement_the_hold_is_the_operators_choice_and_says_the_rule_is_not_enforced(
    packs: PackRegistry,
) -> None:
    before = date(2025, 5, 12)
    d = decide(packs, before, job(), customer=party(packs, "AE", as_of=before))
    assert {p["id"]: p for p in d.provisions}["red-flag-28"]["enforced"] is True
    d = decide(packs, AS_OF, job(), customer=party(packs, "AE"))
    rf = {p["id"]: p for p in d.provisions}["red-flag-28"]
    assert rf["enforced"] is False and rf["codified"] is True
    assert not d.allowed and any("not enforced" in line for line in d.explanation)


def test_an_operator_following_the_non_enforcement_posture_records_without_blocking(packs: PackRegistry) -> None:
    from pathlib import Path

    import yaml

    sample = Path(__file__).resolve().parents[2] / "policies/samples/valid/enforcement-audit-only.yaml"
    reg = PackRegistry([*packs.packs, parse_pack(yaml.safe_load(sample.read_text()), str(sample))])
    d = decide(reg, AS_OF, job(), customer=party(reg, "AE"))
    assert d.allowed and d.code == redflag.HOLD_FOR_INQUIRY and d.open_case and d.mode == "audit"
    # deny_unknown_customer: false there: an unmapped namespace is treated as headquartered outside Tier 1.
    d = decide(reg, AS_OF, job(), customer=None)
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.tier == 2 and d.allowed


def test_a_tier3_job_admitted_in_warn_or_audit_mode_records_its_run_estimate_and_hours(packs: PackRegistry) -> None:
    """Session 24: admitted with a warning (warn) or silently (audit), a Tier 3 customer's job ran with no estimate
    on record: the audit trail did not say how much it could train, and the customer's split-run sums never counted
    it (they count an admitted job's run estimate until its hours end)."""
    for mode in ("warn", "audit", "enforce"):
        d = decide(packs, AS_OF, job(3e25), customer=party(packs, "CN"), mode=mode)
        assert d.code == redflag.DENY_TIER3 and d.allowed is (mode != "enforce")
        assert d.run_operations is not None and d.run_operations >= 3e25, (mode, d.run_operations)
        assert d.hours == 1 and d.model_key == "m", (mode, d.hours, d.model_key)


def test_a_job_declaring_a_precision_its_chip_has_no_rate_for_still_records_a_bound(packs: PackRegistry) -> None:
    """Review R6: an A100 job declaring FP8 (the A100 has no FP8 rate) recorded no run estimate when admitted (a
    Tier 3 job in warn mode, a Tier 1 job), so it counted toward none of the customer's split-run sums. The bound is
    then the chip's highest training rate (review R9: not the default precision's, half an H100's FP8 rate)."""
    a100 = catalog().accelerator("a100")
    req = JobRequest("tenant", "Job", "train", demands=(ChipDemand(a100, 4096, "nvidia.com/gpu", "test"),),
                     declared=Declared(model="m", precision="FP8", expected_hours=2000))
    plain = JobRequest("tenant", "Job", "train", demands=req.demands, declared=Declared(model="m", expected_hours=2000))
    for customer, mode in ((party(packs, "CN"), "warn"), (party(packs, "US"), "enforce")):
        d = decide(packs, AS_OF, req, customer=customer, mode=mode)
        assert d.allowed and d.run_operations is not None and d.hours == 2000, (customer.name, d.run_operations)
        assert d.run_operations == decide(packs, AS_OF, plain, customer=customer, mode=mode).run_operations


def test_an_h100_job_declaring_fp4_is_bounded_at_the_h100s_fp8_rate_not_its_bf16_one(packs: PackRegistry) -> None:
    h100 = catalog().accelerator("h100")
    demands = (ChipDemand(h100, 1024, "nvidia.com/gpu", "test"),)
    fp4 = JobRequest("tenant", "Job", "train", demands=demands,
                     declared=Declared(model="m", precision="FP4", expected_hours=1000))
    fp8 = JobRequest("tenant", "Job", "train", demands=demands,
                     declared=Declared(model="m", precision="FP8", expected_hours=1000))
    d = decide(packs, AS_OF, fp4, customer=party(packs, "US"))
    assert d.run_operations == decide(packs, AS_OF, fp8, customer=party(packs, "US")).run_operations


def test_a_job_of_h100s_and_a100s_declaring_fp8_keeps_the_h100s_fp8_rate(packs: PackRegistry) -> None:
    """Review R10: one precision for every chip group bounded the H100s at BF16 beside A100s that have no FP8."""
    h100, a100 = catalog().accelerator("h100"), catalog().accelerator("a100")

    def req(demands: tuple[ChipDemand, ...], precision: str) -> JobRequest:
        return JobRequest("tenant", "Job", "train", demands=demands,
                          declared=Declared(model="m", precision=precision, expected_hours=1000))

    h, a = ChipDemand(h100, 1024, "nvidia.com/gpu", "test"), ChipDemand(a100, 1024, "nvidia.com/gpu", "test")
    us = party(packs, "US")
    both = decide(packs, AS_OF, req((h, a), "FP8"), customer=us).run_operations
    alone = [decide(packs, AS_OF, req((h,), "FP8"), customer=us).run_operations,
             decide(packs, AS_OF, req((a,), "BF16"), customer=us).run_operations]
    assert both is not None and None not in alone
    assert both == pytest.approx(sum(x for x in alone if x is not None))
