"""Reviews decided several to a transaction (the webhook's queue) decide exactly as one by one would.

The webhook hands :func:`agent.cases.evaluate_reviews` every review waiting, in arrival order. A customer's
reviews are taken one per round, each round reading after the previous one's decisions are written, so a
split run in one batch is caught as it is across batches; a review that fails is retried alone and fails
alone. Both stores: on PostgreSQL the batch's rows and audit entries go in one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import col, select

import agent.directory
from agent import parties
from agent.audit import verify_chain
from agent.cases import Outcome, evaluate_review, evaluate_reviews
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.cases import AdmissionDecision, RedFlagCase
from agent.store.tables.core import PartyNamespace
from policies import redflag
from tests.webhook.conftest import M, job, review, seed

BIG = {M + "model": "frontier", M + "expected-hours": "8000"}  # 1024 H100 × 8000 h ≈ 2.9e25 a job


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    url: str = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
    agent.directory.clear()
    seed(url)
    yield url
    agent.directory.clear()


def batch(url: str, bodies: list[dict[str, Any]], **kw: Any) -> list[Outcome]:
    with session_scope(url) as s:
        return evaluate_reviews(s, registry(), bodies, **kw)


def one_by_one(url: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
    outs = []
    for body in bodies:
        with session_scope(url) as s:
            outs.append(evaluate_review(s, registry(), body))
    return outs


def test_a_split_run_in_one_batch_is_held_where_one_by_one_would_hold_it(store: str) -> None:
    bodies = [review(job(f"part-{i}", pods=128, annotations=BIG)) for i in range(6)]
    outs = batch(store, bodies)
    assert [o.code for o in outs] == [redflag.ALLOW] * 3 + [redflag.HOLD_FOR_INQUIRY] * 3
    assert [o.uid for o in outs] == [b["request"]["uid"] for b in bodies]
    # The held parts share one case, opened by the first of them.
    assert outs[3].case_id is not None and {o.case_id for o in outs[3:]} == {outs[3].case_id}
    assert outs[3].decision is not None and "3 related admitted job(s)" in "\n".join(outs[3].decision.explanation)
    with session_scope(store) as s:
        assert len(s.exec(select(RedFlagCase)).all()) == 1


def test_a_held_jobs_case_holds_what_one_by_one_would_record(store: str, pg_url: str, db_url: str) -> None:
    """The case a batch opens and adds to (its jobs, estimate, explanation, audit entries) is the case the
    same reviews leave one by one."""
    bodies = [review(job(f"part-{i}", pods=128 * (1 + i % 2), annotations=BIG)) for i in range(7)]
    bodies.append(bodies[4])  # a held job submitted again: listed once
    outs = batch(store, bodies)
    other = pg_url if store == db_url else db_url
    seed(other)
    agent.directory.clear()
    alone = one_by_one(other, bodies)
    assert [o.code for o in outs] == [o.code for o in alone]
    assert redflag.HOLD_FOR_INQUIRY in [o.code for o in outs]

    def case_and_trail(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
        with session_scope(url) as s:
            cs = [(c.customer_name, c.model_key, c.status, c.source, c.jobs, c.estimate_operations, c.threshold,
                   c.explanation, c.customer_id is not None) for c in s.exec(select(RedFlagCase)).all()]
            trail = [(e.action, e.payload) for e in s.exec(select(AuditEntry).where(
                col(AuditEntry.action).startswith("case.")).order_by(col(AuditEntry.seq))).all()]
            assert verify_chain(s).ok
            return cs, trail

    assert case_and_trail(store) == case_and_trail(other)


def test_a_batch_decides_what_the_same_reviews_decide_one_by_one(store: str, pg_url: str, db_url: str) -> None:
    mixed = [
        review(job("us-big", "tenant-us", pods=128, annotations=BIG)),       # Tier 1: admitted
        review(job("mo-small", "tenant-mo")),                                 # Tier 3: refused
        review(job("ae-0", pods=128, annotations=BIG)),
        review(job("ie-0", "tenant-ie-ae", pods=128, annotations=BIG)),      # another customer's lineage
        review(job("ae-1", pods=128, annotations=BIG)),
        review(job("ae-dry", pods=512, annotations=BIG), dry_run=True),     # would be held: records nothing
        review(job("ae-2", pods=128, annotations=BIG)),
        review({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad", "namespace": "tenant-ae"},
                "spec": {"parallelism": "many"}}),                           # unreadable: denied, recorded
        review(job("ae-3", pods=128, annotations=BIG)),                      # the fourth part: held
        review(job("ae-gone", pods=128, annotations=BIG), operation="DELETE"),
        review(job("nobody", "tenant-unknown", pods=1)),                      # no customer
    ]
    outs = batch(store, mixed)
    other = pg_url if store == db_url else db_url  # a fresh store of the other kind, decided one by one
    seed(other)
    agent.directory.clear()
    alone = one_by_one(other, mixed)
    assert [(o.code, o.allowed, o.dry_run) for o in outs] == [(o.code, o.allowed, o.dry_run) for o in alone]
    assert outs[8].code == redflag.HOLD_FOR_INQUIRY and outs[1].code == redflag.DENY_TIER3
    assert outs[5].decision_id is None and outs[9].decision_id is None
    ids = [o.decision_id for o in outs if o.decision_id is not None]
    assert ids == sorted(ids) and len(ids) == 9
    with session_scope(store) as s:
        rows = s.exec(select(AdmissionDecision).order_by(col(AdmissionDecision.id))).all()
        assert [r.id for r in rows] == ids and [r.uid for r in rows] == [o.uid for o in outs if o.decision_id]
        decided = s.exec(select(AuditEntry).where(AuditEntry.action == "admission.decide")
                         .order_by(col(AuditEntry.seq))).all()
        # One entry per decision, in the batch's order, each naming its decision row.
        assert [e.subject for e in decided] == [f"job:{r.job_ref}" for r in rows]
        assert [f'"decision_id":{r.id}' in e.payload for e, r in zip(decided, rows, strict=True)] == [True] * 9
        assert verify_chain(s).ok


def test_namespaces_of_one_customer_in_one_batch_count_together(store: str) -> None:
    with session_scope(store) as s:
        ea = parties.get_party(s, "Emirates AI")
        assert ea.id is not None
        s.add(PartyNamespace(party_id=ea.id, namespace="tenant-ae-b", cluster=""))
    agent.directory.clear()
    bodies = [review(job(f"p-{i}", "tenant-ae" if i % 2 else "tenant-ae-b", pods=128, annotations=BIG))
              for i in range(5)]
    assert [o.code for o in batch(store, bodies)] == [redflag.ALLOW] * 3 + [redflag.HOLD_FOR_INQUIRY] * 2


def test_a_review_that_fails_in_a_batch_fails_alone(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from controllers.webhook import evaluate

    real = redflag.decide

    def broken_for_one(packs: Any, as_of: Any, req: redflag.JobRequest, **kw: Any) -> redflag.Decision:
        if req.name == "poison":
            raise RuntimeError("a pack this job trips over")
        return real(packs, as_of, req, **kw)

    monkeypatch.setattr(redflag, "decide", broken_for_one)
    bodies = [review(job("fine-0")), review(job("poison")), review(job("fine-1", "tenant-us"))]
    results = evaluate(store, bodies)
    assert isinstance(results[1], RuntimeError)
    answers = [r for r in results if isinstance(r, dict)]
    assert [a["response"]["uid"] for a in answers] == [bodies[0]["request"]["uid"], bodies[2]["request"]["uid"]]
    assert all(a["response"]["allowed"] for a in answers)
    with session_scope(store) as s:
        assert sorted(r.name for r in s.exec(select(AdmissionDecision)).all()) == ["fine-0", "fine-1"]
        assert verify_chain(s).ok


def test_a_batch_of_dry_runs_records_nothing(store: str) -> None:
    outs = batch(store, [review(job(f"d-{i}", pods=512, annotations=BIG), dry_run=True) for i in range(3)])
    assert all(o.dry_run and o.decision_id is None and o.case_id is None for o in outs)
    with session_scope(store) as s:
        assert s.exec(select(AdmissionDecision)).all() == [] and s.exec(select(RedFlagCase)).all() == []
        assert {e.action for e in s.exec(select(AuditEntry)).all()} == {"party.create"}
