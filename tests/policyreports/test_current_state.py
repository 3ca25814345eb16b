"""Reports show refusals as they stand now: a case answered since, or a later admission, clears the fail result."""

from __future__ import annotations

from agent.cases import evaluate_review, resolve_case
from agent.packs import registry
from agent.store.db import session_scope
from controllers.policyreports import desired_reports, held_jobs_from_store
from policies import redflag
from tests.webhook.conftest import load_sample, review, seed


def _held(url: str) -> list[str]:
    with session_scope(url) as s:
        return sorted(h.ref for h in held_jobs_from_store(s) if h.result == "fail")


def test_a_held_job_whose_case_is_answered_since_no_longer_fails(db_url: str) -> None:
    seed(db_url)
    with session_scope(db_url) as s:
        out = evaluate_review(s, registry(), review(load_sample("VolcanoJob", "held")))
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.case_id is not None
    assert _held(db_url) == ["tenant-ae/Job.batch.volcano.sh/volcanojob-held"]
    with session_scope(db_url) as s:
        reports = desired_reports(held_jobs_from_store(s))
    assert reports["tenant-ae"]["summary"]["fail"] == 1
    with session_scope(db_url) as s:
        resolve_case(s, registry(), out.case_id, export_intent=False, by="compliance@example.com")
    # Not re-submitted: the answered case admits it now, so the refusal no longer stands.
    assert _held(db_url) == []


def test_a_held_job_admitted_on_resubmission_no_longer_fails(db_url: str) -> None:
    seed(db_url)
    obj = load_sample("PyTorchJob", "held")
    with session_scope(db_url) as s:
        out = evaluate_review(s, registry(), review(obj))
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.case_id is not None
    with session_scope(db_url) as s:
        resolve_case(s, registry(), out.case_id, export_intent=False, by="compliance@example.com")
    with session_scope(db_url) as s:
        again = evaluate_review(s, registry(), review(obj))
    assert again.allowed
    assert _held(db_url) == []
