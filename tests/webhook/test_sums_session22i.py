"""Session 22i: anti-evasion gaps in the admission sums.

- A job admitted while its customer was Tier 1 records its run estimate (and lineage key), so once the customer
  leaves Tier 1 (its ultimate parent re-registered outside Tier 1) that job counts toward its split-run sums.
  ¶7 reports still list only the decisions they listed before (a Tier 1 decision projected no lineage).
- The customer-aggregate hold names the number of model names truly counted: the job's own model is not added
  again when the counted jobs already name it.
"""

from __future__ import annotations

from datetime import date

import pytest

from agent import cases, directory, obligations, parties
from agent.cases import Outcome
from agent.kb import catalog
from agent.packs import registry
from agent.store import session_scope
from policies import redflag
from policies.parties import PartyRef, effective_tier
from policies.redflag import ChipDemand, CustomerLoad, Declared, JobRequest, decide

from .conftest import M, job, review

# 256 pods × 8 H100 × 8000 h ≈ 0.585e26 operations: one part is under 10^26, two are over it.
PART = {"pods": 256}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


def _decide(url: str, name: str, model: str, ns: str = "tenant-hl", *, cluster: str = "",
            dry_run: bool = False, pods: int = PART["pods"]) -> Outcome:
    body = review(job(name, ns, annotations={M + "model": model, M + "expected-hours": "8000"}, pods=pods),
                  dry_run=dry_run)
    with session_scope(url) as s:
        return cases.evaluate_review(s, registry(), body, cluster=cluster)


def _harbour_labs(url: str) -> None:
    with session_scope(url) as s:
        parties.add_party(s, "Harbour Labs", "GB", None, ["tenant-hl"])  # Tier 1
        parties.add_party(s, "Gulf Parent", "AE")                         # Tier 2


def _reparent(url: str) -> None:
    # Its ultimate parent re-registered in a Tier 2 country: the customer leaves Tier 1 today.
    with session_scope(url) as s:
        parties.add_party(s, "Harbour Labs", None, "Gulf Parent")
    directory.clear()


def test_a_tier1_decision_records_the_run_estimate_it_would_count_with() -> None:
    reg = registry()
    as_of = date.today()
    us = effective_tier(reg, {"C": PartyRef("C", "US")}, "C", as_of)
    h100 = catalog().accelerator("h100")
    req = JobRequest("ns", "Job", "j", demands=(ChipDemand(h100, 64, "nvidia.com/gpu", "test"),),
                     declared=Declared(model="m", expected_hours=100))
    d = decide(reg, as_of, req, customer=us)
    assert d.code == redflag.ALLOW and d.tier == 1
    assert d.model_key == "m"
    assert d.run_operations is not None and d.run_operations > 0
    # Its lineage is not projected (red flag 28 does not apply): nothing claims a lineage total.
    assert d.lineage_operations is None and d.model_status == ""
    unnamed = decide(reg, as_of, JobRequest("ns", "Job", "u", demands=req.demands), customer=us)
    assert unnamed.model_key == "unnamed-model/C" and unnamed.run_operations == pytest.approx(
        d.run_operations * 720 / 100)  # no expected-hours: the default maximum
    # The hours it may run by the decision's reckoning, kept in its detail (to_dict).
    assert d.to_dict()["hours"] == 100 and unnamed.hours == 720


def test_a_part_admitted_while_tier1_counts_once_the_customer_leaves_tier1(url: str) -> None:
    _harbour_labs(url)
    first = _decide(url, "part-1", "frontier-1")
    assert first.code == redflag.ALLOW and "Tier 1" in first.message, first.message
    _reparent(url)
    second = _decide(url, "part-2", "frontier-1", dry_run=True)
    # The lineage is both parts: 1.17e26 ≥ 10^26. Without the first part's estimate it was 0.585e26, admitted.
    assert second.code == redflag.HOLD_FOR_INQUIRY, second.message
    other = _decide(url, "part-3", "frontier-2", dry_run=True)
    assert other.code == redflag.HOLD_FOR_INQUIRY and "model name" in other.message, other.message


def test_para7_lists_a_tier1_customers_decision_at_a_site_outside_tier1(url: str) -> None:
    """¶7's location prong: training at a site outside Supp. 5(a) is covered whoever the customer is."""
    _harbour_labs(url)
    with session_scope(url) as s:
        parties.add_site(s, "dc-dubai", "AE", cluster="c-ae")  # a site outside Tier 1: ¶7 lists its runs
    assert _decide(url, "part-1", "frontier-1", cluster="c-ae").code == redflag.ALLOW
    assert _decide(url, "ae-1", "m-ae", "tenant-ae", cluster="c-ae").code == redflag.ALLOW
    with session_scope(url) as s:
        runs = obligations.para7_for_site(s, registry(), "dc-dubai", date.today())["runs"]
    assert [r["customer"] for r in runs] == ["Harbour Labs", "Emirates AI"], runs


def test_the_aggregate_hold_counts_the_jobs_own_model_once() -> None:
    reg = registry()
    as_of = date.today()
    ae = effective_tier(reg, {"C": PartyRef("C", "AE")}, "C", as_of)
    h100 = catalog().accelerator("h100")
    req = JobRequest("ns", "Job", "j", demands=(ChipDemand(h100, 8, "nvidia.com/gpu", "test"),),
                     declared=Declared(model="m", operations=6e25))
    # The other jobs, summed across model names, name two models, one of them this job's own ("m": a part of
    # its lineage older than related_jobs_window_days but inside customer_aggregate_window_days).
    load = CustomerLoad(5e25, 2, 2, 90, own_model=True)
    d = decide(reg, as_of, req, customer=ae, load=load)
    assert d.code == redflag.HOLD_FOR_INQUIRY and d.case_key == "customer-aggregate/C"
    assert "across 2 model name(s)" in d.message, d.message
    other = decide(reg, as_of, req, customer=ae, load=CustomerLoad(5e25, 2, 2, 90))
    assert "across 3 model name(s)" in other.message, other.message


def test_the_load_read_says_whether_the_jobs_own_model_is_among_those_counted(store: str) -> None:
    assert _decide(store, "a-1", "alpha", "tenant-ae", pods=16).code == redflag.ALLOW
    assert _decide(store, "b-1", "beta", "tenant-ae", pods=16).code == redflag.ALLOW
    with session_scope(store) as s:
        from agent.store.tables.core import utcnow

        now = utcnow()
        for model, own in (("alpha", True), ("gamma", False)):
            rows = s.execute(*cases.related_query("Emirates AI", model, now, now.replace(year=now.year - 1),
                                                  "ns/Job/x", 90, now)).all()
            _related, load = cases.related_from([tuple(r) for r in rows], 90)
            assert load is not None and load.models == 2 and load.own_model is own
