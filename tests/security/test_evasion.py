"""Evasion of the red-flag-28 gate, through the real webhook path (``POST /validate`` on the app).

Already covered in tests/webhook/test_redflag_admission.py and not repeated here:
- split runs of one named model counted together (test_split_runs_of_one_model_are_counted_together);
- omitted model annotation pooled per customer (test_unnamed_jobs_go_to_the_customers_unnamed_model_bucket);
- tiny declared figures with a large allocation
  (test_declared_figures_below_hardware_bound_do_not_hide_a_large_reservation);
- a Tier 1 subsidiary of a Tier 3 / Tier 2 parent (static ownership: test_tier1_subsidiary_of_*).

This file covers the rest: many *small* jobs over HTTP, renaming the model, omitting every annotation,
claiming a published base that the ledger does not record as published, moving a namespace to another
customer mid-run and changing an ultimate parent mid-run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

import agent.directory
from agent import ledger, parties
from agent.api.app import create_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from policies import redflag
from tests.webhook.conftest import M, job, review, seed

CACHE_TTL = 0.2  # the namespace → customer cache (VEU_CUSTOMER_CACHE_SECONDS, default 5 s), shortened


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Both stores: the admission statements differ by dialect (one-round-trip audit append, typed UNIONs).
    url: str = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
    monkeypatch.setattr(agent.directory, "TTL", CACHE_TTL)
    agent.directory.clear()
    seed(url)
    yield url
    agent.directory.clear()


@pytest.fixture()
def client(store: str) -> TestClient:
    return TestClient(create_app(store), raise_server_exceptions=False)


def admit(client: TestClient, obj: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/validate", json=review(obj))
    assert r.status_code == 200, r.text[:300]
    resp: dict[str, Any] = r.json()["response"]
    return resp


def code(resp: dict[str, Any]) -> str:
    return str(resp["auditAnnotations"]["code"])


def expire_customer_cache() -> None:
    import time

    time.sleep(CACHE_TTL + 0.05)


# One job: 16 pods × 8 H100 for 8000 h = 128 × 9.894e14 × 3600 × 8000 ≈ 3.65e24 operations.
SMALL = {"pods": 16, "gpus": 8}


def test_slices_of_one_run_submitted_at_once_are_held_once_the_sum_reaches_1e26(
        store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``kubectl apply`` of 30 slices at once: every review is in flight together, none recorded yet.

    Reviews of one customer are decided one at a time (reads to recorded decision), so each slice sees the
    ones decided before it. The decision is slowed down here to hold the window open: without that
    serialisation all 30 slices read an empty history and are admitted.
    """
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from controllers.webhook import evaluate

    real_decide = redflag.decide

    def slow_decide(*args: Any, **kwargs: Any) -> redflag.Decision:
        time.sleep(0.02)
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(redflag, "decide", slow_decide)
    ann = {M + "model": "volley", M + "expected-hours": "8000"}
    bodies = [review(job(f"volley-{i:02d}", annotations=ann, **SMALL)) for i in range(30)]
    start = threading.Barrier(len(bodies))

    def submit(body: dict[str, Any]) -> str:
        start.wait()
        answer = evaluate(store, [body])[0]
        assert isinstance(answer, dict), answer
        return str(answer["response"]["auditAnnotations"]["code"])

    with ThreadPoolExecutor(len(bodies)) as pool:
        codes = list(pool.map(submit, bodies))
    # As when submitted one by one: 27 slices fit under 1e26, the rest wait for the inquiry.
    assert codes.count(redflag.HOLD_FOR_INQUIRY) == 3 and codes.count(redflag.ALLOW) == 27, codes


def test_many_small_jobs_of_one_model_are_held_once_the_sum_reaches_1e26(client: TestClient) -> None:
    ann = {M + "model": "slicer", M + "expected-hours": "8000"}
    codes = [code(admit(client, job(f"slice-{i:02d}", annotations=ann, **SMALL))) for i in range(30)]
    first_hold = codes.index(redflag.HOLD_FOR_INQUIRY)
    # 1e26 / 3.65e24 = 27.4: the 28th slice (index 27) is the first one that brings the lineage over.
    assert first_hold == 27, codes
    assert set(codes[:first_hold]) == {redflag.ALLOW}
    assert set(codes[first_hold:]) == {redflag.HOLD_FOR_INQUIRY}


def test_many_small_unannotated_jobs_fill_the_customers_unnamed_bucket(client: TestClient) -> None:
    codes = [code(admit(client, job(f"anon-{i:02d}", annotations={M + "expected-hours": "8000"}, **SMALL)))
             for i in range(30)]
    assert redflag.HOLD_FOR_INQUIRY in codes and codes.index(redflag.HOLD_FOR_INQUIRY) == 27


def test_omitting_every_annotation_still_bounds_the_job_by_its_hardware(client: TestClient) -> None:
    # No model, no figures, no expected hours: the default maximum duration applies at utilization 1.0,
    # so a 40,960-GPU allocation is held even though the job says nothing about itself.
    resp = admit(client, job("quiet", pods=5120, gpus=8, annotations={}))
    assert code(resp) == redflag.HOLD_FOR_INQUIRY and resp["allowed"] is False
    assert "unnamed-model/Emirates AI" in resp["status"]["message"]


def test_renaming_the_model_does_not_release_a_held_job(client: TestClient) -> None:
    held = admit(client, job("big", pods=512, annotations={M + "model": "frontier-1", M + "expected-hours": "8000"}))
    assert code(held) == redflag.HOLD_FOR_INQUIRY
    for alias in ("frontier-1-v2", "totally-small-model", "Frontier-1"):
        again = admit(client, job("big", pods=512, annotations={M + "model": alias, M + "expected-hours": "8000"}))
        # The job's own hardware bound is over 1e26 whatever it is called.
        assert code(again) == redflag.HOLD_FOR_INQUIRY and again["allowed"] is False, alias


def test_a_run_split_across_many_model_names_is_held_once_the_customers_sum_reaches_1e26(client: TestClient) -> None:
    # The same 28 slices as above, but every slice names a different model: no lineage reaches 1e26,
    # the customer's admitted total does (admission-settings.customer_aggregate_window_days).
    resps = [admit(client, job(f"part-{i:02d}", annotations={M + "model": f"name-{i:02d}",
                                                             M + "expected-hours": "8000"}, **SMALL))
             for i in range(30)]
    codes = [code(r) for r in resps]
    assert codes.index(redflag.HOLD_FOR_INQUIRY) == 27 and set(codes[:27]) == {redflag.ALLOW}, codes
    held = resps[27]
    assert held["allowed"] is False and "model name(s)" in held["status"]["message"]
    cases = client.get("/api/v1/cases", params={"status": "open"}).json()
    assert [c["model"] for c in cases] == ["customer-aggregate/Emirates AI"]
    # One inquiry on record for the customer's total admits the rest.
    r = client.post(f"/api/v1/cases/{cases[0]['id']}/resolve", json={"export_intent": "no", "by": "officer"})
    assert r.status_code == 200, r.text
    after = admit(client, job("part-99", annotations={M + "model": "name-99", M + "expected-hours": "8000"}, **SMALL))
    assert code(after) == redflag.ALLOW_AFTER_INQUIRY and after["allowed"] is True


def test_renaming_a_held_job_to_an_unnamed_one_does_not_release_it(client: TestClient) -> None:
    admit(client, job("big", pods=512, annotations={M + "model": "frontier-1", M + "expected-hours": "8000"}))
    again = admit(client, job("big", pods=512, annotations={M + "expected-hours": "8000"}))
    assert code(again) == redflag.HOLD_FOR_INQUIRY


def test_claimed_published_base_that_the_ledger_records_as_unpublished_counts_in_full(
    client: TestClient, store: str,
) -> None:
    with session_scope(store) as s:
        ledger.add_model(s, "open-weights-9e25", "Emirates AI", published=False, actor="test")
        est = ledger.estimate(registry(), date(2026, 1, 1), operations=9.5e25)
        ledger.add_run(s, "open-weights-9e25", est, start=date(2026, 1, 1), actor="test")
    ann = {M + "model": "ft-1", M + "base-model": "open-weights-9e25", M + "operations": "8e24",
           M + "expected-hours": "1",
           # Claims the job has no say over: publication status comes only from the ledger.
           M + "published": "true", M + "base-model-published": "true", "huggingface.co/license": "apache-2.0"}
    resp = admit(client, job("ft", pods=1, annotations=ann))
    assert code(resp) == redflag.HOLD_FOR_INQUIRY, resp["status"]["message"]


def test_claimed_base_model_absent_from_the_ledger_excludes_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "It's a fine-tune of llama" where llama is not in the ledger: the job's own operations count in full.
    # Under a fail-open webhook this must still be a decision, not a configuration error that admits it.
    monkeypatch.setenv("VEU_WEBHOOK_FAILURE_MODE", "allow")
    ann = {M + "model": "ft-2", M + "base-model": "meta-llama/Llama-3.1-405B", M + "expected-hours": "8000"}
    resp = admit(client, job("ft2", pods=512, annotations=ann))
    assert resp["allowed"] is False and code(resp) == redflag.HOLD_FOR_INQUIRY, json.dumps(resp)[:400]
    small = admit(client, job("ft3", pods=1, gpus=1, annotations={**ann, M + "model": "ft-3"}))
    assert code(small) == redflag.ALLOW and small["allowed"] is True


def test_naming_a_job_after_a_published_model_does_not_exclude_a_large_run(client: TestClient, store: str) -> None:
    with session_scope(store) as s:
        ledger.add_model(s, "public-7b", "US Lab", published=True, published_on=date(2025, 1, 1), actor="test")
    ann = {M + "model": "public-7b", M + "expected-hours": "8000"}
    resp = admit(client, job("big-public", pods=512, annotations=ann))
    # Further training of published weights makes new weights: over the derivative limits it is counted.
    assert code(resp) == redflag.HOLD_FOR_INQUIRY, resp["status"]["message"]


def test_a_model_name_another_customer_owns_is_not_this_customers_lineage(client: TestClient, store: str) -> None:
    from agent.packs import registry
    from policies.compute import EstimationDefaults, declared_operations

    with session_scope(store) as s:  # US Lab's own, unpublished model, already at 9.9e25
        ledger.add_model(s, "atlas", "US Lab", actor="test")
        est = declared_operations(EstimationDefaults.from_packs(registry(), date(2026, 1, 1)), 9.9e25)
        ledger.add_run(s, "atlas", est, start=date(2026, 1, 1), actor="test")
    ann = {M + "model": "atlas", M + "expected-hours": "8000"}
    # Emirates AI names its small job "atlas": US Lab's operations are not its lineage, nor is its run charged
    # to US Lab's model; its own lineage is "Emirates AI/atlas".
    mine = admit(client, job("small-atlas", pods=16, annotations=ann))
    # (Charged to US Lab's 9.9e25, this 3.65e24 job would have been held.)
    assert code(mine) == redflag.ALLOW, mine
    decided = client.get("/api/v1/decisions").json()
    assert decided[0]["model"] == "Emirates AI/atlas", decided[0]
    # Metering of that job goes to the customer's own lineage too.
    with session_scope(store) as s:
        usage = ledger.add_metered_usage(
            s, customer="Emirates AI", model="atlas", job="tenant-ae/Job/small-atlas#p-0", accelerator_name="h100",
            chip_seconds=3600.0, start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 11, 1, 1, tzinfo=UTC),
            packs=registry(), actor="test")
        assert ledger.model_name_of(s, usage.model_id) == "Emirates AI/atlas"
        assert ledger.model_status(s, registry(), "atlas", date(2026, 11, 23)).cumulative_operations == \
            pytest.approx(9.9e25)
    # A model of the customer's own corporate group is its lineage: Dublin Sub (parent Emirates AI) training
    # Emirates AI's model counts with it.
    with session_scope(store) as s:
        ledger.add_model(s, "falcon-x", "Emirates AI", actor="test")
        ledger.add_run(s, "falcon-x", est, start=date(2026, 1, 1), actor="test")
    sub = admit(client, job("sub-falcon", "tenant-ie-ae", pods=16,
                            annotations={M + "model": "falcon-x", M + "expected-hours": "8000"}))
    assert code(sub) == redflag.HOLD_FOR_INQUIRY and "falcon-x" in sub["status"]["message"]


def test_moving_a_namespace_to_another_customer_mid_run_applies_to_the_next_job(
    client: TestClient, store: str,
) -> None:
    with session_scope(store) as s:
        parties.add_party(s, "Shell Co", "US", None, ["tenant-shell"])
    ann = {M + "model": "m-shell", M + "expected-hours": "8000"}
    first = admit(client, job("a", "tenant-shell", pods=512, annotations=ann))
    assert code(first) == redflag.ALLOW  # Tier 1 customer: red flag 28 does not apply
    with session_scope(store) as s:  # the operator re-maps the namespace to the Tier 2 customer
        parties.add_party(s, "Emirates AI", "AE", None, ["tenant-shell"], reassign=True)
    expire_customer_cache()
    second = admit(client, job("b", "tenant-shell", pods=512, annotations=ann))
    assert code(second) == redflag.HOLD_FOR_INQUIRY and "Emirates AI" in second["status"]["message"]
    with session_scope(store) as s:  # and to a Tier 3 one
        parties.add_party(s, "Macau Holdings", "MO", None, ["tenant-shell"], reassign=True)
    expire_customer_cache()
    assert code(admit(client, job("c", "tenant-shell", pods=1, gpus=1))) == redflag.DENY_TIER3
    with session_scope(store) as s:
        subjects = [e.subject for e in s.exec(select(AuditEntry)).all()]
    # Each re-mapping is attributed in the audit trail, so a quiet move is visible afterwards.
    assert sum(1 for x in subjects if x in ("party:Emirates AI", "party:Macau Holdings")) >= 2, subjects


def test_changing_an_ultimate_parent_mid_run_applies_to_the_next_job(client: TestClient, store: str) -> None:
    with session_scope(store) as s:
        parties.add_party(s, "Paris Lab", "FR", None, ["tenant-paris"])
    ann = {M + "model": "m-paris", M + "expected-hours": "8000"}
    assert code(admit(client, job("a", "tenant-paris", pods=512, annotations=ann))) == redflag.ALLOW
    with session_scope(store) as s:  # acquired by the Tier 2 customer
        parties.add_party(s, "Paris Lab", "FR", "Emirates AI")
    expire_customer_cache()
    assert code(admit(client, job("b", "tenant-paris", pods=512, annotations=ann))) == redflag.HOLD_FOR_INQUIRY
    with session_scope(store) as s:  # and the parent itself is bought by a Tier 3 holding
        parties.add_party(s, "Emirates AI", "AE", "Macau Holdings")
    expire_customer_cache()
    assert code(admit(client, job("c", "tenant-paris", pods=1, gpus=1))) == redflag.DENY_TIER3
    with session_scope(store) as s:
        entries = [e for e in s.exec(select(AuditEntry)).all() if e.subject == "party:Paris Lab"]
    assert any("Emirates AI" in (e.payload or "") for e in entries), "the parent change is not audited"
