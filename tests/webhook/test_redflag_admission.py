"""Red flag 28 at admission, against a real store: tiers, the ultimate parent, cases, evasion, modes, dry runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlmodel import func, select

from agent import cases, ledger
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.cases import AdmissionDecision, RedFlagCase
from policies import redflag
from policies.errors import PolicyError

from .conftest import CUSTOMERS, SAMPLES, M, job, load_sample, review

Decide = Callable[..., Outcome]
def expected_chips(obj: dict[str, Any]) -> float:
    return float(obj["metadata"]["annotations"]["samples.veu-governor.io/expected-chips"])


KINDS = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}  # 4096 H100 × 8000 h = 1.17e26


def counts(url: str) -> tuple[int, int]:
    with session_scope(url) as s:
        return (s.exec(select(func.count()).select_from(RedFlagCase)).one(),
                s.exec(select(func.count()).select_from(AdmissionDecision)).one())


def test_every_job_kind_has_an_allowed_and_a_held_sample() -> None:
    assert len(KINDS) >= 12
    for k in KINDS:
        assert (SAMPLES / k / "allowed.yaml").is_file() and (SAMPLES / k / "held.yaml").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_tier2_customer_sample_below_1e26_is_allowed(kind: str, decide_review: Decide) -> None:
    obj = load_sample(kind, "allowed")
    out = decide_review(review(obj))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert out.decision is not None
    assert out.decision.chips == pytest.approx(expected_chips(obj))


@pytest.mark.parametrize("kind", KINDS)
def test_tier2_customer_training_over_1e26_is_held_for_inquiry(kind: str, decide_review: Decide, store: str) -> None:
    obj = load_sample(kind, "held")
    out = decide_review(review(obj))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.case_id is not None and f"cases resolve {out.case_id}" in out.message
    assert out.estimate is not None and out.estimate >= 1e26
    assert out.decision is not None
    assert out.decision.chips == pytest.approx(expected_chips(obj))
    body = out.response()
    assert body["response"]["status"]["code"] == 403 and body["response"]["allowed"] is False


def test_tier1_customer_is_allowed_whatever_the_size(decide_review: Decide) -> None:
    out = decide_review(review(job("big", "tenant-us", pods=512, annotations=BIG)))
    assert out.allowed and out.code == redflag.ALLOW and "Tier 1" in out.message


def test_tier3_customer_is_denied_outright(decide_review: Decide, store: str) -> None:
    out = decide_review(review(job("small", "tenant-mo", pods=1)))
    assert not out.allowed and out.code == redflag.DENY_TIER3
    assert counts(store)[0] == 0  # no inquiry can cure Tier 3: no case


def test_tier1_subsidiary_of_a_macau_parent_is_denied_by_the_ultimate_parent_rule(decide_review: Decide) -> None:
    out = decide_review(review(job("small", "tenant-gb-mo", pods=1)))
    assert out.code == redflag.DENY_TIER3 and "Macau Holdings" in (out.decision.tier_basis if out.decision else "")


def test_tier1_subsidiary_of_a_tier2_parent_is_held_over_1e26(decide_review: Decide) -> None:
    out = decide_review(review(job("big", "tenant-ie-ae", pods=512, annotations=BIG)))
    assert out.code == redflag.HOLD_FOR_INQUIRY
    assert out.decision is not None and out.decision.tier == 2
    assert "ultimate parent Emirates AI" in out.decision.tier_basis


def test_accelerator_job_in_unmapped_namespace_is_denied(decide_review: Decide) -> None:
    out = decide_review(review(job("x", "nobody")))
    assert out.code == redflag.DENY_UNKNOWN_CUSTOMER and "veuctl parties add" in out.message


def test_cpu_only_job_in_unmapped_namespace_is_allowed(decide_review: Decide) -> None:
    obj = job("x", "nobody")
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "4"}}
    assert decide_review(review(obj)).code == redflag.ALLOW


def test_exempt_namespace_is_exempt(decide_review: Decide) -> None:
    out = decide_review(review(job("gpu-burn", "kube-system", pods=4096)))
    assert out.allowed and out.code == redflag.EXEMPT


def test_split_runs_of_one_model_are_counted_together(decide_review: Decide) -> None:
    # Four jobs of 1024 H100 × 8000 h (2.9e25 each) for the same model: the fourth takes it over 1e26.
    outs = [decide_review(review(job(f"part-{i}", pods=128, annotations=BIG))) for i in range(4)]
    assert [o.code for o in outs] == [redflag.ALLOW] * 3 + [redflag.HOLD_FOR_INQUIRY]
    assert outs[3].decision is not None and "3 related admitted job(s)" in "\n".join(outs[3].decision.explanation)


def test_resubmitting_the_same_job_does_not_count_it_twice(decide_review: Decide) -> None:
    for _ in range(5):
        out = decide_review(review(job("same", pods=128, annotations=BIG)))
        assert out.code == redflag.ALLOW


def test_unnamed_jobs_go_to_the_customers_unnamed_model_bucket(decide_review: Decide) -> None:
    ann = {M + "expected-hours": "8000"}
    outs = [decide_review(review(job(f"anon-{i}", pods=128, annotations=ann))) for i in range(4)]
    assert outs[3].code == redflag.HOLD_FOR_INQUIRY
    assert outs[3].decision is not None and outs[3].decision.model_key == "unnamed-model/Emirates AI"


def test_other_customers_jobs_do_not_count_toward_a_lineage(
    decide_review: Decide, overlay_mode: Callable[..., None],
) -> None:
    # Dublin Sub is Emirates AI's subsidiary: with the default corporate-group scope the customer-wide sum would
    # take in its parent's jobs (tests/webhook/test_redflag_corporate_group.py). The lineage itself is per customer.
    overlay_mode("enforce", customer_aggregate_scope="customer")
    for i in range(3):
        decide_review(review(job(f"p{i}", pods=128, annotations=BIG)))
    out = decide_review(review(job("other", "tenant-ie-ae", pods=128, annotations=BIG)))
    assert out.code == redflag.ALLOW


def test_declared_figures_below_hardware_bound_do_not_hide_a_large_reservation(decide_review: Decide) -> None:
    ann = {M + "model": "m", M + "operations": "1e20"}  # no expected-hours: default 720 h bound applies
    out = decide_review(review(job("liar", pods=5000, annotations=ann)))
    # 40,000 H100 × 720 h × 9.894e14 × 3600 = 1.03e26 >= 1e26
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.decision is not None
    assert out.decision.estimate is not None and out.decision.estimate.inputs["run_method"] == "hardware"


def test_fine_tuning_adds_to_the_base_models_ledger_total(decide_review: Decide, store: str) -> None:
    with session_scope(store) as s:
        ledger.add_model(s, "base-9e25", "Emirates AI", actor="test")
        est = ledger.estimate(registry(), date(2026, 1, 1), operations=9.5e25)
        ledger.add_run(s, "base-9e25", est, start=date(2026, 1, 1), actor="test")
    ann = {M + "model": "ft-1", M + "base-model": "base-9e25", M + "operations": "8e24", M + "expected-hours": "1"}
    out = decide_review(review(job("ft", pods=1, annotations=ann)))
    assert out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.estimate == pytest.approx(9.5e25 + 8e24, rel=1e-6)


def test_case_resolved_with_no_export_intent_admits_the_lineage(decide_review: Decide, store: str) -> None:
    body = review(job("big", pods=512, annotations=BIG))
    held = decide_review(body)
    assert held.case_id is not None
    again = decide_review(review(job("big-2", pods=512, annotations=BIG)))
    assert again.case_id == held.case_id  # the open case is reused
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance@provider")
    out = decide_review(body)
    assert out.allowed and out.code == redflag.ALLOW_AFTER_INQUIRY and "no intent to export" in out.message
    with session_scope(store) as s:
        view = cases.case_view(cases.get_case(s, held.case_id))
    assert view["jobs"] == ["tenant-ae/Job/big", "tenant-ae/Job/big-2"] and view["status"] == "resolved"


def test_export_intent_yes_needs_a_licence_or_the_customer_informed(decide_review: Decide, store: str) -> None:
    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    assert held.case_id is not None
    with session_scope(store) as s, pytest.raises(PolicyError, match="--license NUM"):
        cases.resolve_case(s, registry(), held.case_id, export_intent=True, by="x")
    with session_scope(store) as s:
        assert cases.get_case(s, held.case_id).status == "open"  # the refused answer wrote nothing
        cases.resolve_case(s, registry(), held.case_id, export_intent=True, licence="D123456", by="x")
    out = decide_review(review(job("big", pods=512, annotations=BIG)))
    assert out.code == redflag.ALLOW_AFTER_INQUIRY and "licence D123456" in out.message


def test_customer_informed_of_obligation_satisfies_the_inquiry(decide_review: Decide, store: str) -> None:
    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=True, informed=True, by="x")
    assert decide_review(review(job("big", pods=512, annotations=BIG))).code == redflag.ALLOW_AFTER_INQUIRY


def test_resolved_case_expires_and_the_next_job_opens_a_new_case(decide_review: Decide, store: str) -> None:
    from datetime import timedelta

    from agent.store.tables.core import utcnow

    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=False, by="x")
    later = utcnow() + timedelta(days=400)  # case_expiry_days = 365
    out = decide_review(review(job("big", pods=512, annotations=BIG)), now=later)
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.case_id != held.case_id
    with session_scope(store) as s:
        assert cases.list_cases(s, "expired", now=later)[0]["id"] == held.case_id


def test_dry_run_creates_no_case_and_no_record(decide_review: Decide, store: str) -> None:
    with session_scope(store) as s:
        audit_before = s.exec(select(func.count()).select_from(AuditEntry)).one()
    out = decide_review(review(job("big", pods=512, annotations=BIG), dry_run=True))
    assert out.code == redflag.HOLD_FOR_INQUIRY and not out.allowed and out.case_id is None and out.dry_run
    assert counts(store) == (0, 0)
    with session_scope(store) as s:
        assert s.exec(select(func.count()).select_from(AuditEntry)).one() == audit_before


def test_every_decision_is_recorded_with_estimate_arithmetic_and_pack_versions(
    decide_review: Decide, store: str,
) -> None:
    out = decide_review(review(job("big", pods=512, annotations=BIG)))
    with session_scope(store) as s:
        row = s.get(AdmissionDecision, out.decision_id)
        assert row is not None and row.code == redflag.HOLD_FOR_INQUIRY and row.case_id == out.case_id
        detail = json.loads(row.detail)
        versions = json.loads(row.pack_versions)
        audit = s.exec(select(AuditEntry).where(AuditEntry.action == "admission.decide")).all()
    assert versions == registry().versions()
    assert "4096 chips × 8000 h" in "\n".join(detail["explanation"])
    assert detail["asked"]["annotations"]["model"] == "frontier-1"
    assert {p["id"] for p in detail["provisions"]} >= {"red-flag-28", "eccn-4e091", "admission-settings"}
    rf = next(p for p in detail["provisions"] if p["id"] == "red-flag-28")
    assert rf["codified"] is True and rf["enforced"] is False and "confirmed" in rf
    assert len(audit) == 1


def test_warn_mode_admits_with_a_warning_and_still_opens_the_case(decide_review: Decide, overlay_mode: Any) -> None:
    overlay_mode("warn")
    out = decide_review(review(job("big", pods=512, annotations=BIG)))
    assert out.allowed and out.code == redflag.HOLD_FOR_INQUIRY and out.case_id is not None
    assert any("HOLD_FOR_INQUIRY" in w for w in out.warnings)
    assert out.response()["response"]["warnings"]


def test_audit_mode_admits_silently_and_records(decide_review: Decide, overlay_mode: Any, store: str) -> None:
    overlay_mode("audit")
    out = decide_review(review(job("small", "tenant-mo")))
    assert out.allowed and out.code == redflag.DENY_TIER3 and not out.warnings
    assert counts(store)[1] == 1


def test_unknown_customer_can_be_configured_to_be_treated_as_non_tier1(decide_review: Decide,
                                                                       overlay_mode: Any) -> None:
    overlay_mode("enforce", deny_unknown_customer=False)
    assert decide_review(review(job("small", "nobody"))).code == redflag.ALLOW
    assert decide_review(review(job("big", "nobody", pods=512, annotations=BIG))).code == redflag.HOLD_FOR_INQUIRY


def test_bad_annotation_is_a_reasoned_denial(decide_review: Decide) -> None:
    out = decide_review(review(job("x", annotations={M + "params": "lots", M + "tokens": "1e12"})))
    assert not out.allowed and out.code == redflag.DENY_INVALID and "compute.veu-governor.io/params" in out.message


def test_malformed_object_is_a_reasoned_denial(decide_review: Decide) -> None:
    obj = job("x")
    obj["spec"]["parallelism"] = "many"
    out = decide_review(review(obj))
    assert out.code == redflag.DENY_INVALID and "spec.parallelism" in out.message


def test_malformed_review_envelope_raises_a_policy_error(decide_review: Decide) -> None:
    with pytest.raises(cases.ReviewError, match=r"request\.uid"):
        decide_review({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}})


def _owned(obj: dict[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    return {**obj, "metadata": {**obj.get("metadata", {}), "ownerReferences": [
        {"apiVersion": api_version, "kind": kind, "name": "big", "uid": "u", "controller": True}]}}


def _by(body: dict[str, Any], user: str) -> dict[str, Any]:
    body["request"]["userInfo"] = {"username": user, "groups": ["system:serviceaccounts"]}
    return body


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big-abc"},
       "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}


def test_pod_created_by_the_job_controller_is_counted_at_its_owner(decide_review: Decide) -> None:
    body = _by(review(_owned(POD, "Job", "batch/v1"), namespace="tenant-mo"),
               "system:serviceaccount:kube-system:job-controller")
    out = decide_review(body)
    assert out.allowed and "counted at its owner" in out.message


def test_a_child_job_created_by_the_jobset_controller_is_counted_at_its_jobset(decide_review: Decide) -> None:
    child = _owned(job("big-workers-0", "tenant-ae", pods=512, annotations=BIG), "JobSet", "jobset.x-k8s.io/v1alpha2")
    out = decide_review(_by(review(child), "system:serviceaccount:jobset-system:jobset-controller-manager"))
    assert out.allowed and "counted at its owner" in out.message and out.case_id is None


def test_a_pod_claiming_an_owner_but_created_by_a_user_is_decided_on_its_own(decide_review: Decide) -> None:
    # Anyone can write an ownerReference: a fake one must not carry a Tier 3 customer's pod past the gate.
    out = decide_review(review(_owned(POD, "Job", "batch/v1"), namespace="tenant-mo"))
    assert not out.allowed and out.code == redflag.DENY_TIER3
    assert any("not a trusted controller" in w for w in out.warnings)


def test_delete_and_status_updates_are_not_gated(decide_review: Decide) -> None:
    body = review(job("big", "tenant-mo"), operation="DELETE")
    assert decide_review(body).allowed
    body = review(job("big", "tenant-mo"), operation="UPDATE")
    body["request"]["subResource"] = "status"
    assert decide_review(body).allowed


def test_customers_are_seeded_as_documented(store: str) -> None:
    with session_scope(store) as s:
        assert len(cases.list_cases(s)) == 0
    assert len(CUSTOMERS) == 5


def test_a_resolved_case_is_answered_again_only_as_an_amendment_that_keeps_its_expiry(
    decide_review: Decide, store: str,
) -> None:
    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    case_id = held.case_id or 0
    with session_scope(store) as s:
        first = cases.resolve_case(s, registry(), case_id, export_intent=False, by="compliance")
        expires = first.expires_at
    with session_scope(store) as s, pytest.raises(PolicyError, match=r"already resolved by compliance.*--amend"):
        cases.resolve_case(s, registry(), case_id, export_intent=True, licence="D1", by="someone else")
    with session_scope(store) as s:
        row = cases.resolve_case(s, registry(), case_id, export_intent=True, licence="D123456", by="compliance",
                                 amend=True)
        assert row.licence_number == "D123456" and row.expires_at == expires  # the validity is not prolonged
    with session_scope(store) as s:
        from sqlmodel import select

        from agent.store.tables.audit import AuditEntry

        actions = [e.action for e in s.exec(select(AuditEntry).where(AuditEntry.subject == f"case:{case_id}")).all()]
        assert actions[-2:] == ["case.resolve", "case.amend"]


def test_before_red_flag_28s_compliance_date_a_run_over_1e26_is_admitted_with_a_warning(decide_review: Decide) -> None:
    """The AI Diffusion rule took effect on 2025-01-13 with compliance 120 days after publication, 2025-05-15
    (red-flag-28 ``compliance_from``): a review dated between them is decided, and what would be held is
    admitted with a warning, as in warn mode; from the compliance date it is held."""
    early = decide_review(review(job("early", "tenant-ae", pods=512, annotations=BIG)), as_of=date(2025, 3, 3))
    assert early.code == redflag.HOLD_FOR_INQUIRY and early.allowed, early.message
    assert early.decision is not None and early.decision.mode == "warn"
    assert any("compliance begins 2025-05-15" in line for line in early.decision.explanation)
    assert any("HOLD_FOR_INQUIRY" in w for w in early.response()["response"].get("warnings", []))
    due = decide_review(review(job("due", "tenant-ae", pods=512, annotations=BIG)), as_of=date(2025, 5, 15))
    assert due.code == redflag.HOLD_FOR_INQUIRY and not due.allowed, due.message
