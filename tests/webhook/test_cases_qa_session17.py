"""Session 17 QA of the red-flag-28 inquiry cases (15 CFR 732 Supp. 3, red flag 28): what each answer does, when
answers are on record, and bad input, through `veuctl` and the HTTP API on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent import cases
from agent.api.app import create_app
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utcnow
from policies import redflag
from policies.errors import PolicyError

from .conftest import M, Result, job, review

Decide = Callable[..., Outcome]
BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}  # 4096 H100 × 8000 h = 1.17e26


def _held(decide_review: Decide, name: str = "big", ann: dict[str, str] | None = None, ns: str = "tenant-ae"
          ) -> Outcome:
    out = decide_review(review(job(name, ns, pods=512, annotations=ann or BIG)))
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.case_id is not None, out.message
    return out


def _case_ids(url: str) -> list[int]:
    with session_scope(url) as s:
        return [c["id"] for c in cases.list_cases(s)]


# ------------------------------------------------------------------------------------ as-of days and the answers


def test_a_review_as_of_a_day_before_the_customer_answered_is_held_not_admitted_on_answers_not_yet_given(
    decide_review: Decide, store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    held = _held(decide_review)
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=False, by="compliance")
    before = (utcnow() - timedelta(days=30)).date().isoformat()
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("big", pods=512, annotations=BIG), dry_run=True)))
    out = json.loads(veuctl("admission", "review", str(f), "--as-of", before, "--json").stdout)
    # The inquiry was not on record that day (the red-flags register reads such a case as open then, too).
    assert out["code"] == redflag.HOLD_FOR_INQUIRY and out["allowed"] is False, out["message"]
    today = json.loads(veuctl("admission", "review", str(f), "--json").stdout)
    assert today["code"] == redflag.ALLOW_AFTER_INQUIRY and today["case_id"] == held.case_id


def test_a_recorded_review_as_of_a_day_before_the_answers_is_refused_and_leaves_the_answered_case_in_force(
    decide_review: Decide, store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    held = _held(decide_review)
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=False, by="compliance")
    before = (utcnow() - timedelta(days=30)).date().isoformat()
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("big", pods=512, annotations=BIG))))
    r = veuctl("admission", "review", str(f), "--as-of", before, "--json")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, (r.stdout, r.stderr)
    assert "--as-of" in r.stderr and f"case {held.case_id}" in r.stderr and "dryRun" in r.stderr
    # No new open case superseding the answered one: the webhook still admits the lineage today.
    assert _case_ids(store) == [held.case_id]
    assert decide_review(review(job("big", pods=512, annotations=BIG))).code == redflag.ALLOW_AFTER_INQUIRY


def test_a_case_answered_on_the_as_of_day_itself_admits(decide_review: Decide, store: str) -> None:
    held = _held(decide_review)
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=True, licence="D123456", by="c")
    out = decide_review(review(job("big", pods=512, annotations=BIG)), as_of=utcnow().date())
    assert out.code == redflag.ALLOW_AFTER_INQUIRY and "licence D123456" in out.message


def test_the_pure_decision_takes_an_answer_only_from_the_day_it_was_recorded(packs: Any) -> None:
    from datetime import date

    answered = redflag.CaseState(7, "resolved", export_intent=False, resolved_by="c",
                                 resolved_on=date(2026, 3, 2), expires_on=date(2027, 3, 2))
    assert not answered.satisfied(date(2026, 3, 1))
    assert answered.satisfied(date(2026, 3, 2)) and answered.satisfied(date(2027, 3, 2))
    assert not answered.satisfied(date(2027, 3, 3))


# ------------------------------------------------------------------------------------ contradictory answers


@pytest.mark.parametrize("extra", [{"licence": "D123456"}, {"informed": True}, {"scope": "weights to AE"}])
def test_no_export_intent_with_licence_answers_is_refused_as_contradictory(
    decide_review: Decide, store: str, extra: dict[str, Any],
) -> None:
    held = _held(decide_review)
    with session_scope(store) as s, pytest.raises(PolicyError, match="--export-intent no"):
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=False, by="c", **extra)
    with session_scope(store) as s:
        assert cases.get_case(s, held.case_id or 0).status == "open"  # nothing written


def test_a_licence_scope_without_a_licence_number_is_refused(decide_review: Decide, store: str) -> None:
    held = _held(decide_review)
    with session_scope(store) as s, pytest.raises(PolicyError, match="--scope"):
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=True, informed=True, scope="AE only",
                           by="c")


def test_contradictory_answers_are_refused_by_the_cli_and_the_api_naming_the_fields(
    decide_review: Decide, store: str, veuctl: Callable[..., Result],
) -> None:
    held = _held(decide_review)
    r = veuctl("cases", "resolve", str(held.case_id), "--export-intent", "no", "--license", "D1", "--by", "c")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--license" in r.stderr, r.stderr
    c = TestClient(create_app(store))
    bad = c.post(f"/api/v1/cases/{held.case_id}/resolve", json={"export_intent": "no", "informed": True, "by": "c"})
    assert bad.status_code == 422 and "informed" in bad.json()["detail"] and "--" not in bad.json()["detail"]
    assert c.get(f"/api/v1/cases/{held.case_id}").json()["status"] == "open"
    ok = c.post(f"/api/v1/cases/{held.case_id}/resolve", json={"export_intent": "no", "by": "c"})
    assert ok.status_code == 200 and ok.json()["answers"]["export_intent"] is False


# ------------------------------------------------------------------------------------ review files


def test_a_review_whose_dry_run_flag_is_not_a_boolean_is_refused_naming_the_field(
    store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    body = review(job("big", pods=512, annotations=BIG))
    body["request"]["dryRun"] = "true"  # a hand-written file meaning a dry run; the API server sends a boolean
    f = tmp_path / "review.json"
    f.write_text(json.dumps(body))
    r = veuctl("admission", "review", str(f), "--json")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "request.dryRun" in r.stderr
    assert _case_ids(store) == []  # nothing recorded, no case opened
    c = TestClient(create_app(store))
    resp = c.post("/validate", json=body)
    assert resp.status_code == 400 and "request.dryRun" in resp.text
    assert _case_ids(store) == []


# ------------------------------------------------------------------------------------ whose answers


def test_an_answer_for_one_unmapped_namespace_does_not_admit_another_unmapped_namespaces_job(
    decide_review: Decide, store: str, overlay_mode: Any,
) -> None:
    overlay_mode("enforce", deny_unknown_customer=False)  # unmapped namespaces treated as outside Tier 1
    a = _held(decide_review, ns="lab-a")
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), a.case_id or 0, export_intent=False, by="compliance")
    assert decide_review(review(job("big", "lab-a", pods=512, annotations=BIG))).code == redflag.ALLOW_AFTER_INQUIRY
    # Whoever runs in lab-b was never asked: its own case, not lab-a's answers.
    b = decide_review(review(job("big", "lab-b", pods=512, annotations=BIG)))
    assert b.code == redflag.HOLD_FOR_INQUIRY and b.case_id not in (None, a.case_id), b.message


# ------------------------------------------------------------------------------------ over HTTP, on PostgreSQL


def test_over_http_on_postgresql_an_answer_covers_its_own_customer_and_model_only(pg_store: str) -> None:
    c = TestClient(create_app(pg_store))

    def validate(name: str, ns: str, model: str) -> dict[str, Any]:
        ann = {**BIG, M + "model": model}
        resp = c.post("/validate", json=review(job(name, ns, pods=512, annotations=ann)))
        assert resp.status_code == 200, resp.text
        return dict(resp.json()["response"])

    held = validate("a", "tenant-ae", "frontier-1")
    case_id = int(held["auditAnnotations"]["case"])
    assert held["allowed"] is False and held["auditAnnotations"]["code"] == "HOLD_FOR_INQUIRY"
    ok = c.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "yes", "license": "D123456",
                                                           "scope": "frontier-1 weights to AE", "by": "compliance"})
    assert ok.status_code == 200 and ok.json()["resolved_by"] == "compliance" and ok.json()["resolved_at"]
    assert validate("a", "tenant-ae", "frontier-1")["auditAnnotations"]["code"] == "ALLOW_AFTER_INQUIRY"
    # The same customer training another model: not asked about it.
    other = validate("b", "tenant-ae", "frontier-2")
    assert other["allowed"] is False and int(other["auditAnnotations"]["case"]) != case_id
    # Its Tier 1-headquartered subsidiary (ultimate parent in the UAE): a customer of its own, asked on its own.
    sub = validate("c", "tenant-ie-ae", "frontier-1")
    assert sub["allowed"] is False and int(sub["auditAnnotations"]["case"]) not in (case_id,)
    # Resolving twice: a conflict, the answers on file stand; an unknown case: 404.
    again = c.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "no", "by": "eve"})
    assert again.status_code == 409 and c.get(f"/api/v1/cases/{case_id}").json()["answers"]["licence_number"] == \
        "D123456"
    assert c.post("/api/v1/cases/987654/resolve", json={"export_intent": "no", "by": "a"}).status_code == 404
    bad = c.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "maybe", "by": "a"})
    assert bad.status_code == 422


def test_on_postgresql_a_case_expires_and_answers_only_count_from_the_day_recorded(
    pg_store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    with session_scope(pg_store) as s:
        held = cases.evaluate_review(s, registry(), review(job("big", pods=512, annotations=BIG)))
    assert held.case_id is not None
    with session_scope(pg_store) as s:
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance")
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("big", pods=512, annotations=BIG))))
    before = (utcnow() - timedelta(days=1)).date().isoformat()
    r = veuctl("admission", "review", str(f), "--as-of", before, "--db", pg_store, "--json")
    assert r.returncode == 2 and "--as-of" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert json.loads(veuctl("admission", "review", str(f), "--db", pg_store, "--json").stdout)["code"] == \
        redflag.ALLOW_AFTER_INQUIRY
    later = utcnow() + timedelta(days=400)  # past case_expiry_days (365)
    with session_scope(pg_store) as s:
        out = cases.evaluate_review(s, registry(), review(job("big", pods=512, annotations=BIG)), now=later)
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.case_id not in (None, held.case_id)
    with session_scope(pg_store) as s, pytest.raises(PolicyError, match="expired"):
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="c", now=later)
