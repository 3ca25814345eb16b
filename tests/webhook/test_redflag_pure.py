"""policies.redflag.decide as a pure function: 4E091 derivative rules, double counting, modes, codes."""

from __future__ import annotations

from datetime import date

import pytest

from agent.kb import catalog
from policies import redflag
from policies.ledger import ModelRecord, Run
from policies.packs import PackRegistry, parse_pack
from policies.parties import PartyRef, effective_tier
from policies.redflag import CaseState, ChipDemand, CustomerLoad, Declared, JobRequest, RelatedJob, decide

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


def test_a_fine_tune_of_a_published_model_split_into_jobs_under_the_allowance_is_one_derivative(
    packs: PackRegistry,
) -> None:
    # 9e25 published; each job adds 2e25 (< the 2.5e25 allowance) but the customer's two jobs add 4e25: its
    # derivative is 1.3e26, controlled. Charging each job as its own derivative let the split through.
    pub = ModelRecord("open-9e25", owner="US Lab", published=True, published_on=date(2026, 1, 1),
                      runs=(Run(9e25, start=date(2025, 1, 1)),))
    rel = [RelatedJob("ns/Job/part-1", 2e25, AS_OF)]
    d = decide(packs, AS_OF, request(2e25, "open-9e25"), customer=customer(packs), records={"open-9e25": pub},
               related=rel)
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.lineage_operations == pytest.approx(1.3e26)
    assert d.model_key == "open-9e25"  # the customer's later jobs on the model find this one
    alone = decide(packs, AS_OF, request(2e25, "open-9e25"), customer=customer(packs), records={"open-9e25": pub})
    assert alone.code == redflag.ALLOW and alone.model_status == "excluded:derivative-of-published"


def test_metered_training_of_a_published_model_counts_in_the_customers_derivative(packs: PackRegistry) -> None:
    from policies.ledger import derivative_name

    pub = ModelRecord("open-9e25", owner="US Lab", published=True, published_on=date(2026, 1, 1),
                      runs=(Run(9e25, start=date(2025, 1, 1)),))
    mine = derivative_name("open-9e25", "C")
    metered = ModelRecord(mine, owner="C", base="open-9e25",
                          runs=(Run(2e25, method="metered", job="ns/Job/part-1#p-0"),))
    d = decide(packs, AS_OF, request(1e25, "open-9e25"), customer=customer(packs),
               records={"open-9e25": pub, mine: metered})
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.lineage_operations == pytest.approx(1.2e26)


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


def test_the_hardware_bound_says_its_utilization_comes_from_the_pack_not_the_job(packs: PackRegistry) -> None:
    text = "\n".join(decide(packs, AS_OF, request(), customer=customer(packs)).explanation)
    assert "admission-settings.utilization" in text and "(stated)" not in text
    assert "hardware: hardware" not in text and "hardware:" in text


def test_a_lineage_just_below_1e26_is_allowed_with_a_total_that_does_not_read_as_1e26(packs: PackRegistry) -> None:
    d = decide(packs, AS_OF, request(9.9996e25), customer=customer(packs))
    assert d.code == redflag.ALLOW and "projected 9.9996e25 operations" in d.message
    d = decide(packs, AS_OF, request(1.00004e26), customer=customer(packs))
    assert d.code == redflag.HOLD_FOR_INQUIRY and "to 1.00004e26 operations (>= 1e26" in d.message


def test_a_job_with_two_chip_groups_sums_their_hardware_bounds_under_one_heading(packs: PackRegistry) -> None:
    h100, a100 = catalog().accelerator("h100"), catalog().accelerator("a100")
    req = JobRequest("ns", "PyTorchJob", "j", declared=Declared(model="m", expected_hours=1), demands=(
        ChipDemand(h100, 8, "nvidia.com/gpu", "Master"), ChipDemand(a100, 64, "nvidia.com/gpu", "Worker")))
    text = "\n".join(decide(packs, AS_OF, req, customer=customer(packs)).explanation)
    assert "hardware (sum over the job's 2 chip groups): 8 chips" in text
    assert "; 64 chips" in text and text.count("hardware:") == 0


def test_jobs_split_across_model_names_are_held_once_the_customers_sum_reaches_1e26(packs: PackRegistry) -> None:
    # Five other jobs, each under a different model name, already admitted: 9e25 in all.
    load = CustomerLoad(9e25, jobs=5, models=5, window_days=90)
    d = decide(packs, AS_OF, request(2e25, "yet-another-name"), customer=customer(packs), load=load)
    assert d.code == redflag.HOLD_FOR_INQUIRY and not d.allowed and d.open_case
    # The job still counts toward its own model; the case is about the customer's total.
    assert d.model_key == "yet-another-name" and d.case_subject == "customer-aggregate/C"
    assert "6 model name(s)" in d.message and "1.1e26" in d.message
    below = decide(packs, AS_OF, request(5e24, "small"), customer=customer(packs), load=load)
    assert below.code == redflag.ALLOW and below.case_key is None


def test_customer_aggregate_inquiry_on_record_admits_the_next_job(packs: PackRegistry) -> None:
    load = CustomerLoad(9e25, jobs=5, models=5, window_days=90)
    done = CaseState(7, "resolved", export_intent=False, resolved_by="officer")
    d = decide(packs, AS_OF, request(2e25, "n6"), customer=customer(packs), load=load, case=done)
    assert d.code == redflag.ALLOW_AFTER_INQUIRY and d.allowed and d.case_id == 7


def test_customer_aggregate_does_not_apply_to_tier1_customers(packs: PackRegistry) -> None:
    load = CustomerLoad(9e26, jobs=50, models=50, window_days=90)
    assert decide(packs, AS_OF, request(2e25, "n"), customer=customer(packs, "US"), load=load).code == redflag.ALLOW


def _admission_settings(window: object) -> PackRegistry:
    """The operator defaults with customer_aggregate_window_days overridden by an operator pack."""
    from agent.packs import registry

    base = registry()
    values = dict(base.provision("admission-settings", AS_OF).values, customer_aggregate_window_days=window)
    doc = {"id": "operator-aggregate-test", "version": "1", "title": "test", "provisions": [{
        "id": "admission-settings", "title": "test", "citation": "test", "effective_from": "2020-01-01",
        "status": [{"since": "2020-01-01", "codified": True, "enforced": True}], "values": values}]}
    return PackRegistry([*base.packs, parse_pack(doc, "override")])


def test_customer_aggregate_window_comes_from_the_pack_and_zero_turns_it_off(packs: PackRegistry) -> None:
    load = CustomerLoad(9e25, jobs=5, models=5, window_days=90)
    off = _admission_settings(0)
    assert decide(off, AS_OF, request(2e25, "n"), customer=customer(off), load=load).code == redflag.ALLOW
    for bad in (-3, 1.5, True):
        reg = _admission_settings(bad)
        with pytest.raises(redflag.AdmissionConfigError, match="customer_aggregate_window_days"):
            decide(reg, AS_OF, request(2e25, "n"), customer=customer(reg), load=load)


def test_an_override_that_leaves_out_the_customer_aggregate_window_is_an_error_not_a_check_turned_off(
    packs: PackRegistry,
) -> None:
    reg = _admission_settings(0)
    settings = next(p for p in reg.packs if p.id == "operator-aggregate-test").provisions[0]
    del settings.values["customer_aggregate_window_days"]
    with pytest.raises(redflag.AdmissionConfigError, match="customer_aggregate_window_days: missing"):
        decide(reg, AS_OF, request(2e25, "n"), customer=customer(reg), load=CustomerLoad(9e25, 5, 5, 90))


def test_trusted_controllers_must_be_a_list_of_user_names() -> None:
    base = _admission_settings(90)
    settings = next(p for p in base.packs if p.id == "operator-aggregate-test").provisions[0]
    for bad in ("system:serviceaccount:kube-system:job-controller", [""], [3]):
        settings.values["trusted_controllers"] = bad
        reg = PackRegistry(list(base.packs))
        with pytest.raises(redflag.AdmissionConfigError, match="trusted_controllers"):
            redflag.AdmissionSettings.from_packs(reg, AS_OF)


def test_a_job_naming_another_partys_unpublished_model_trains_its_own_lineage() -> None:
    from policies.ledger import lineage_name

    theirs = ModelRecord("atlas", owner="US Lab")
    assert lineage_name("atlas", theirs, "Emirates AI", ("Emirates AI",), AS_OF) == "Emirates AI/atlas"
    # Own, own group's (a parent's), published, or not yet in the ledger: the name itself.
    assert lineage_name("atlas", ModelRecord("atlas", owner="Emirates AI"), "Emirates AI", (), AS_OF) == "atlas"
    assert lineage_name("atlas", theirs, "Dublin Sub", ("Dublin Sub", "US Lab"), AS_OF) == "atlas"
    pub = ModelRecord("atlas", owner="US Lab", published=True, published_on=date(2026, 1, 1))
    assert lineage_name("atlas", pub, "Emirates AI", (), AS_OF) == "atlas"
    later = ModelRecord("atlas", owner="US Lab", published=True, published_on=date(2027, 1, 1))
    assert lineage_name("atlas", later, "Emirates AI", (), AS_OF) == "Emirates AI/atlas"
    assert lineage_name("atlas", None, "Emirates AI", (), AS_OF) == "atlas"
