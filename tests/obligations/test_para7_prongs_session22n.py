"""Session 22n: Supp. 10 ¶7's two prongs for the admission webhook's decisions (uveu-nveu-primary.md §4b).

¶7: a VEU may not train a 4E091 model "in a location outside of, or as IaaS for an entity headquartered outside
of" Tier 1 countries; fine-tuning up to 25% of the original model's operations is permitted.

- The location prong: a Tier 1 customer's training at a VEU site outside Tier 1 is listed (its decision records
  the model and run estimate but no projected lineage, and was skipped); at a Tier 1 site it is not.
- Its status is the ledger's; a model the ledger does not hold is "unknown" unless the run alone reaches the
  threshold (no lineage was projected, so "below-threshold" would be a guess).
- The fine-tuning allowance applies to decision rows as to ledger rows, for either prong (a fine-tune of a 4E091
  model was judged a violation outright, since its own ledger status is 4E091).
- Metered usage of the job (controllers/metering.py feeds the ledger) counts as the ledger counts it:
  max(admitted estimate, metered).
- The job's model name is read as metering charges it: another party's model of the same name is not the
  customer's lineage.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from agent import cases, ledger, obligations, parties
from agent.packs import registry
from agent.store import session_scope
from policies.compute import EstimationDefaults, declared_operations
from tests.webhook.conftest import M, job, review

TODAY = date.today()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    u = str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))
    with session_scope(u) as s:
        parties.add_party(s, "Harbour Labs", "GB", None, ["tenant-hl"])   # Tier 1
        parties.add_party(s, "Emirates AI", "AE", None, ["tenant-ae"])    # Tier 2
        parties.add_party(s, "Other Lab", "US")                           # Tier 1
        parties.add_site(s, "dc-dubai", "AE", cluster="c-ae")             # outside Tier 1
        parties.add_site(s, "dc-london", "GB", cluster="c-gb")            # Tier 1
    return u


def _model(url: str, name: str, owner: str, ops: float | None = None, base: str | None = None) -> None:
    d = EstimationDefaults.from_packs(registry(), TODAY)
    with session_scope(url) as s:
        ledger.add_model(s, name, owner, base=base)
        if ops is not None:
            ledger.add_run(s, name, declared_operations(d, ops), start=TODAY - timedelta(days=60))


def _decide(url: str, name: str, model: str, ns: str = "tenant-hl", *, cluster: str, pods: int = 1,
            hours: str = "8000") -> cases.Outcome:
    # 1 pod × 8 H100 × 8000 h ≈ 2.3e23 operations; 256 pods ≈ 0.585e26; 512 pods ≈ 1.17e26.
    body = review(job(name, ns, annotations={M + "model": model, M + "expected-hours": hours}, pods=pods))
    with session_scope(url) as s:
        return cases.evaluate_review(s, registry(), body, cluster=cluster)


def _rows(url: str, site: str) -> list[dict[str, Any]]:
    with session_scope(url) as s:
        return list(obligations.para7_for_site(s, registry(), site, TODAY)["runs"])


def test_a_tier1_customers_4e091_training_at_a_site_outside_tier1_is_listed(url: str) -> None:
    _model(url, "frontier-1", "Harbour Labs", 2e26)
    assert _decide(url, "pre-ae", "frontier-1", cluster="c-ae").allowed
    assert _decide(url, "pre-gb", "frontier-1", cluster="c-gb").allowed
    rows = _rows(url, "dc-dubai")
    assert [r["customer"] for r in rows] == ["Harbour Labs"], rows
    r = rows[0]
    assert r["customer_tier"] == 1 and r["model"] == "frontier-1" and r["model_status"] == "4E091"
    assert r["verdict"] == "violation" and "site dc-dubai is in" in r["why_listed"]
    assert "customer" not in r["why_listed"]  # only the location prong applies
    assert r["operations"] > 0 and r["decision"].startswith("ALLOW")
    # At a Tier 1 site a Tier 1 customer's training is outside ¶7.
    assert _rows(url, "dc-london") == []


def test_a_tier1_run_the_ledger_does_not_hold_is_unknown_unless_the_run_alone_reaches_the_threshold(url: str) -> None:
    assert _decide(url, "small", "new-small", cluster="c-ae").allowed
    assert _decide(url, "big", "new-big", cluster="c-ae", pods=512).allowed  # ≈ 1.17e26 in this one run
    rows = {r["model"]: r for r in _rows(url, "dc-dubai")}
    assert rows["new-small"]["model_status"] == "unknown" and rows["new-small"]["verdict"] == "unknown"
    assert "ledger" in rows["new-small"]["reason"], rows["new-small"]["reason"]  # says what to do
    assert rows["new-big"]["model_status"] == "4E091" and rows["new-big"]["verdict"] == "violation"


@pytest.mark.parametrize("prong", ["location", "party"])
def test_the_fine_tuning_allowance_applies_to_webhook_decisions_for_both_prongs(url: str, prong: str) -> None:
    # location: Harbour Labs (Tier 1) at dc-dubai; party: Emirates AI (Tier 2) at dc-london.
    owner, ns, cluster, site = (("Harbour Labs", "tenant-hl", "c-ae", "dc-dubai") if prong == "location" else
                                ("Emirates AI", "tenant-ae", "c-gb", "dc-london"))
    _model(url, "frontier-1", "Harbour Labs", 2e26)
    _model(url, "ft-small", owner, base="frontier-1")
    _model(url, "ft-big", owner, base="frontier-1")
    _decide(url, "tune-small", "ft-small", ns, cluster=cluster)            # ≈ 2.3e23: 0.1% of 2e26
    _decide(url, "tune-big", "ft-big", ns, cluster=cluster, pods=256)      # ≈ 0.585e26: 29% of 2e26
    rows = {r["model"]: r for r in _rows(url, site)}
    assert set(rows) == {"ft-small", "ft-big"}, rows
    small, big = rows["ft-small"], rows["ft-big"]
    assert small["fine_tune_of"] == "frontier-1" and small["base_operations"] == pytest.approx(2e26)
    assert small["verdict"] == "ok", small["reason"]
    assert small["fine_tune_fraction"] == pytest.approx(small["operations"] / 2e26)
    assert big["fine_tune_of"] == "frontier-1" and big["verdict"] == "violation", big["reason"]
    assert "exceeds 25%" in big["reason"]
    # The same fine-tunes recorded in the ledger at the site get the same verdicts.
    d = EstimationDefaults.from_packs(registry(), TODAY)
    with session_scope(url) as s:
        ledger.add_model(s, "ft-ledger", owner, base="frontier-1")
        ledger.add_run(s, "ft-ledger", declared_operations(d, big["operations"]), start=TODAY, site=site)
    led = {r["model"]: r for r in _rows(url, site)}["ft-ledger"]
    assert led["verdict"] == big["verdict"] and led["fine_tune_fraction"] == pytest.approx(big["fine_tune_fraction"])


def test_metered_usage_beyond_the_admitted_estimate_counts_against_the_allowance(url: str) -> None:
    _model(url, "frontier-1", "Harbour Labs", 2e26)
    _model(url, "ft-1", "Harbour Labs", base="frontier-1")
    out = _decide(url, "tune", "ft-1", cluster="c-ae", hours="10")  # admitted for ≈ 2.9e20
    before = {r["model"]: r for r in _rows(url, "dc-dubai")}["ft-1"]
    assert before["verdict"] == "ok"
    # The job ran far longer than declared: metering charged 25,000 H100 for 100 days (≈ 0.75e26, 37%).
    start = datetime.combine(TODAY - timedelta(days=100), datetime.min.time(), tzinfo=UTC)
    with session_scope(url) as s:
        from agent.store.tables.cases import AdmissionDecision

        ref = s.get(AdmissionDecision, out.decision_id).job_ref  # type: ignore[union-attr]
        ledger.add_metered_usage(s, customer="Harbour Labs", model="ft-1", job=f"{ref}#tune-0",
                                 accelerator_name="h100", chip_seconds=25_000 * 100 * 86400.0, start=start,
                                 end=start + timedelta(days=100), packs=registry())
    after = {r["model"]: r for r in _rows(url, "dc-dubai")}["ft-1"]
    assert after["operations"] > 0.25 * 2e26 and after["verdict"] == "violation", after


def test_another_partys_model_of_the_same_name_is_not_the_customers_lineage(url: str) -> None:
    # Other Lab's unpublished 4E091 model is named "shared-name"; Harbour Labs' small job names the same.
    _model(url, "shared-name", "Other Lab", 3e26)
    assert _decide(url, "mine", "shared-name", cluster="c-ae").allowed
    r = _rows(url, "dc-dubai")[0]
    # Metering charges the job to "Harbour Labs/shared-name", not to Other Lab's lineage.
    assert r["model_status"] != "4E091" and r["verdict"] != "violation", r


def test_a_metered_job_counts_once_at_the_larger_of_estimate_and_metered(url: str) -> None:
    _model(url, "frontier-1", "Harbour Labs", 2e26)
    _model(url, "ft-1", "Harbour Labs", base="frontier-1")
    out = _decide(url, "tune", "ft-1", cluster="c-ae", pods=128)  # admitted for ≈ 0.29e26 (14.6% of 2e26)
    est = {r["model"]: r for r in _rows(url, "dc-dubai")}["ft-1"]["operations"]
    start = datetime.combine(TODAY - timedelta(days=30), datetime.min.time(), tzinfo=UTC)
    with session_scope(url) as s:
        from agent.store.tables.cases import AdmissionDecision

        ref = s.get(AdmissionDecision, out.decision_id).job_ref  # type: ignore[union-attr]
        # Metering charged the same job ≈ 0.3e26 (its pods): one run, not the estimate plus the usage (29.6%).
        ledger.add_metered_usage(s, customer="Harbour Labs", model="ft-1", job=f"{ref}#tune-0",
                                 accelerator_name="h100", chip_seconds=8.7e10, start=start,
                                 end=start + timedelta(days=30), packs=registry())
    row = {r["model"]: r for r in _rows(url, "dc-dubai")}["ft-1"]
    assert est < row["operations"] < 0.2 * 2e26 and row["verdict"] == "ok", row


def test_the_violation_names_the_prong_that_applies(url: str) -> None:
    _model(url, "frontier-1", "Harbour Labs", 2e26)
    _model(url, "gulf-1", "Emirates AI", 2e26)
    _decide(url, "pre-ae", "frontier-1", cluster="c-ae")          # location prong only
    _decide(url, "gulf-gb", "gulf-1", "tenant-ae", cluster="c-gb")  # IaaS prong only
    _decide(url, "gulf-ae", "gulf-1", "tenant-ae", cluster="c-ae")  # both
    ae = {r["customer"]: r["reason"] for r in _rows(url, "dc-dubai")}
    gb = _rows(url, "dc-london")[0]["reason"]
    assert "at a site in AE, outside Supp. 5(a)" in ae["Harbour Labs"] and "IaaS" not in ae["Harbour Labs"]
    assert "IaaS for an entity headquartered outside Supp. 5(a)" in gb and "at a site" not in gb, gb
    assert "at a site in AE" in ae["Emirates AI"] and "IaaS" in ae["Emirates AI"]


def test_a_tier3_job_the_webhook_refused_is_not_listed_as_training_that_ran(url: str) -> None:
    """Session 24 (review R6): a Tier 3 customer's jobs refused in enforce mode never ran, yet once refusals recorded
    a run estimate the 1.17e26 one was listed under ¶7 as a 4E091 violation at the site."""
    with session_scope(url) as s:
        parties.add_party(s, "Macau Holdings", "MO", None, ["tenant-mo"])
    for i, pods in enumerate((1, 512)):
        out = _decide(url, f"t3-{i}", f"m{i}", "tenant-mo", cluster="c-ae", pods=pods)
        assert not out.allowed and out.decision.code == "DENY_TIER3"
    assert _rows(url, "dc-dubai") == []
