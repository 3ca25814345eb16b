"""policies.redflag.decide as a pure function: 4E091 derivative rules, double counting, modes, codes."""

from __future__ import annotations

from datetime import date

import pytest

from agent.kb import catalog
from policies import redflag
from policies.ledger import ModelRecord, Run
from policies.packs import PackRegistry
from policies.parties import PartyRef, effective_tier
from policies.redflag import ChipDemand, Declared, JobRequest, RelatedJob, decide

AS_OF = date(2026, 11, 23)


def customer(packs: PackRegistry, hq: str = "AE"):  # type: ignore[no-untyped-def]
    return effective_tier(packs, {"C": PartyRef("C", hq)}, "C", AS_OF)


def request(ops: float | None = None, model: str | None = "m", base: str | None = None, chips: float = 8,
            hours: float = 1) -> JobRequest:
    h100 = catalog().accelerator("h100")
    return JobRequest("ns", "Job", "j", demands=(ChipDemand(h100, chips, "nvidia.com/gpu", "test"),),
                      declared=Declared(model=model, base_model=base, operations=ops, expected_hours=hours))


def test_fine_tune_of_a_published_model_within_the_derivative_allowance_is_not_4e091(packs: PackRegistry) -> None:
    base = ModelRecord("open-3e26", owner="X", published=True, published_on=date(2026, 1, 1),
                       runs=(Run(3e26, start=date(2025, 1, 1)),))
    # 5e25 more is below max(2.5e25, 25% × 3e26 = 7.5e25): a derivative of a published model, not controlled.
    d = decide(packs, AS_OF, request(5e25, "ft", "open-3e26"), customer=customer(packs), records={"open-3e26": base})
    assert d.code == redflag.ALLOW and d.model_status == "excluded:derivative-of-published"
    d = decide(packs, AS_OF, request(1e26, "ft", "open-3e26"), customer=customer(packs), records={"open-3e26": base})
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.open_case


def test_further_training_of_a_published_model_makes_new_unpublished_weights(packs: PackRegistry) -> None:
    pub = ModelRecord("open-3e26", owner="C", published=True, published_on=date(2026, 1, 1),
                      runs=(Run(3e26, start=date(2025, 1, 1)),))
    d = decide(packs, AS_OF, request(1e26, "open-3e26"), customer=customer(packs), records={"open-3e26": pub})
    assert d.code == redflag.HOLD_FOR_INQUIRY  # not "excluded: published"


def test_a_related_job_already_metered_is_charged_once(packs: PackRegistry) -> None:
    rec = ModelRecord("m", owner="C", runs=(Run(6e25, method="metered", job="ns/Job/a#a-0"),))
    rel = [RelatedJob("ns/Job/a", 5e25, AS_OF)]
    d = decide(packs, AS_OF, request(3e25), customer=customer(packs), records={"m": rec}, related=rel)
    assert d.code == redflag.ALLOW and d.lineage_operations == pytest.approx(9e25)  # max(6e25, 5e25) + 3e25


def test_related_jobs_outside_the_window_do_not_count(packs: PackRegistry) -> None:
    old = [RelatedJob(f"ns/Job/p{i}", 3e25, date(2026, 1, 1)) for i in range(4)]
    assert decide(packs, AS_OF, request(3e25), customer=customer(packs), related=old).code == redflag.ALLOW


def test_modes(packs: PackRegistry) -> None:
    big = request(2e26)
    assert not decide(packs, AS_OF, big, customer=customer(packs)).allowed
    warn = decide(packs, AS_OF, big, customer=customer(packs), mode="warn")
    assert warn.allowed and warn.code == redflag.HOLD_FOR_INQUIRY and warn.warnings
    audit = decide(packs, AS_OF, big, customer=customer(packs), mode="audit")
    assert audit.allowed and not audit.warnings
    with pytest.raises(redflag.AdmissionConfigError):
        decide(packs, AS_OF, big, customer=customer(packs), mode="yolo")


def test_tier1_headquarters_with_no_parent_is_allowed_and_tier3_denied(packs: PackRegistry) -> None:
    assert decide(packs, AS_OF, request(9e26), customer=customer(packs, "US")).code == redflag.ALLOW
    assert decide(packs, AS_OF, request(1.0), customer=customer(packs, "MO")).code == redflag.DENY_TIER3


def test_decision_explains_the_provisions_with_their_status(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, request(2e26), customer=customer(packs))
    ids = {p["id"]: p for p in d.provisions}
    assert ids["red-flag-28"]["enforced"] is False and ids["red-flag-28"]["codified"] is True
    assert "tier1-destinations" in ids and d.versions == packs.versions()
    assert any("lineage total" in line for line in d.explanation)
