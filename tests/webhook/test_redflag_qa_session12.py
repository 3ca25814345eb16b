"""Red flag 28 at admission, QA session 12: the warn-mode warning, the case workflow's edge cases, the review file."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent import cases
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utcnow
from policies import redflag

from .conftest import M, Result, job, load_sample, review

Decide = Callable[..., Outcome]
BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}  # 4096 H100 × 8000 h = 1.17e26


def test_warn_mode_warning_names_the_case_within_the_warning_length_limit(decide_review: Decide,
                                                                          overlay_mode: Any) -> None:
    # In warn mode the job is admitted: kubectl shows the warnings, not status.message, so the warning is what
    # tells the user which case to answer. It is cut to the length the API server keeps (256 runes).
    overlay_mode("warn")
    out = decide_review(review(job("big", pods=512, annotations=BIG)))
    assert out.allowed and out.code == redflag.HOLD_FOR_INQUIRY and out.case_id is not None
    warnings = out.response()["response"]["warnings"]
    assert all(len(w) <= 256 for w in warnings)
    held = [w for w in warnings if "HOLD_FOR_INQUIRY" in w]
    assert held and f"case {out.case_id}" in held[0] and "CASE" not in held[0]


def test_warn_mode_dry_run_warning_names_no_case(decide_review: Decide, overlay_mode: Any) -> None:
    overlay_mode("warn")
    out = decide_review(review(job("big", pods=512, annotations=BIG), dry_run=True))
    assert out.allowed and out.case_id is None
    assert not any("(case " in w for w in out.response()["response"]["warnings"])


def test_warnings_carry_no_control_characters_the_api_server_would_drop(decide_review: Decide) -> None:
    # The API server drops a warning with a control character (k8s.io/apimachinery NewWarningHeader): a chip
    # label value with a tab or newline (a CRD's pod template is not validated as a Pod's) must not lose it.
    obj = load_sample("PyTorchJob", "allowed")
    for spec in _pod_specs(obj):
        spec["nodeSelector"] = {"nvidia.com/gpu.product": "H100\tNEXT\nGEN"}
    out = decide_review(review(obj))
    warnings = out.response()["response"].get("warnings", [])
    assert any("NEXT" in w for w in warnings), warnings
    assert not any(unicodedata.category(c) == "Cc" for w in warnings for c in w)


def _pod_specs(obj: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        if "containers" in obj:
            found.append(obj)
        for v in obj.values():
            found.extend(_pod_specs(v))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(_pod_specs(v))
    return found


def test_resolving_an_expired_case_says_it_expired_not_to_amend_it(decide_review: Decide, store: str) -> None:
    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=False, by="x")
    later = utcnow() + timedelta(days=400)  # case_expiry_days = 365
    with session_scope(store) as s, pytest.raises(cases.CaseError) as err:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=False, by="y", now=later)
    assert "expired" in str(err.value) and "--amend" not in str(err.value)
    assert not isinstance(err.value, cases.CaseAnswered)


@pytest.mark.parametrize("backend", ["store", "pg_store"])
def test_cases_listed_by_status_are_found_beyond_the_newest_page(backend: str, request: pytest.FixtureRequest
                                                                 ) -> None:
    store: str = request.getfixturevalue(backend)

    def decide_review(body: dict[str, Any]) -> Outcome:
        with session_scope(store) as s:
            return cases.evaluate_review(s, registry(), body)

    first = decide_review(review(job("a", pods=512, annotations={**BIG, M + "model": "model-a"})))
    second = decide_review(review(job("b", pods=512, annotations={**BIG, M + "model": "model-b"})))
    assert first.case_id and second.case_id and first.case_id < second.case_id
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), first.case_id, export_intent=False, by="x")
    with session_scope(store) as s:
        assert [c["id"] for c in cases.list_cases(s, "resolved", limit=1)] == [first.case_id]
        assert [c["id"] for c in cases.list_cases(s, "open", limit=1)] == [second.case_id]
        later = utcnow() + timedelta(days=400)
        assert [c["id"] for c in cases.list_cases(s, "expired", limit=1, now=later)] == [first.case_id]
        assert cases.list_cases(s, "resolved", limit=1, now=later) == []


def test_held_decision_shows_whether_red_flag_28_is_codified_and_enforced(decide_review: Decide) -> None:
    # The ai-diffusion-2025 pack (red flag 28) is not enforced since 2025-05-13; a hold in enforce mode must say so.
    out = decide_review(review(job("big", pods=512, annotations=BIG)))
    assert out.decision is not None
    line = next(x for x in out.decision.explanation if x.startswith("red flag 28"))
    assert "codified" in line and "not enforced" in line


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800"])
def test_review_file_with_text_no_store_can_keep_exits_2_with_one_line(
    escape: str, store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("bad-name", pods=1))).replace("bad-name", f"bad{escape}name"))
    r = veuctl("admission", "review", str(f), "--json")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, (r.returncode, r.stderr)
    assert str(f) in r.stderr and "--db" not in r.stderr and "not valid JSON" not in r.stderr
    with session_scope(store) as s:
        assert cases.decisions(s) == []


def test_case_answers_with_control_characters_are_refused_naming_the_answer(
    decide_review: Decide, store: str, veuctl: Callable[..., Result],
) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    r = veuctl("cases", "resolve", str(held.case_id), "--export-intent", "yes", "--license", "D1\nD2", "--by", "a")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--license" in r.stderr
    c = TestClient(create_app(store))
    for field, value in (("license", "D1\u0000"), ("by", "alice\nbob"), ("scope", "AE\u0007")):
        x = c.post(f"/api/v1/cases/{held.case_id}/resolve",
                   json={"export_intent": "yes", "license": "D1", "by": "a", field: value})
        assert x.status_code == 422 and field in x.json()["detail"], x.text
    with session_scope(store) as s:
        assert cases.get_case(s, held.case_id or 0).status == "open"  # nothing recorded
    ok = c.post(f"/api/v1/cases/{held.case_id}/resolve",
                json={"export_intent": "no", "by": "a", "notes": "called the customer\r\nno export planned"})
    assert ok.status_code == 200 and ok.json()["status"] == "resolved"


def test_an_unknown_review_version_is_refused_naming_both_versions_served(decide_review: Decide) -> None:
    # v1beta1 is served too (answered in kind), so the refusal must not say v1 is the only one.
    body = review(job("x", pods=1))
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    out = decide_review(body)
    assert out.response()["apiVersion"] == "admission.k8s.io/v1beta1"
    assert out.response()["response"]["uid"] == body["request"]["uid"]
    body["apiVersion"] = "admission.k8s.io/v2"
    with pytest.raises(cases.ReviewError, match=r"admission.k8s.io/v1 \(or v1beta1\)"):
        decide_review(body)


def test_a_case_id_beyond_the_stores_range_is_no_such_case_not_a_store_error(
    pg_store: str, veuctl: Callable[..., Result],
) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    r = veuctl("cases", "show", "3000000000", "--db", pg_store)
    assert r.returncode == 2 and "no case 3000000000" in r.stderr and "--db" not in r.stderr, r.stderr
    c = TestClient(create_app(pg_store))
    assert c.get("/api/v1/cases/3000000000").status_code == 404
    assert c.post("/api/v1/cases/3000000000/resolve", json={"export_intent": "no", "by": "a"}).status_code == 404
    got = c.get("/api/v1/decisions", params={"case_id": 3000000000})
    assert got.status_code == 200 and got.json() == []


def test_a_recorded_review_as_of_a_later_day_is_refused_and_opens_no_case_that_would_hold_the_lineage(
    decide_review: Decide, store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id or 0, export_intent=False, by="x")
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("big", pods=512, annotations=BIG))))
    later = (utcnow() + timedelta(days=400)).date().isoformat()  # after the case's expiry (case_expiry_days 365)
    r = veuctl("admission", "review", str(f), "--as-of", later, "--json")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--as-of" in r.stderr and "dryRun" in r.stderr
    with session_scope(store) as s:
        assert [c["id"] for c in cases.list_cases(s)] == [held.case_id]
    # Today the answered case still admits the lineage; as of the later day, a dry run shows the hold.
    assert decide_review(review(job("big", pods=512, annotations=BIG))).code == redflag.ALLOW_AFTER_INQUIRY
    f.write_text(json.dumps(review(job("big", pods=512, annotations=BIG), dry_run=True)))
    dry = json.loads(veuctl("admission", "review", str(f), "--as-of", later, "--json").stdout)
    assert dry["code"] == redflag.HOLD_FOR_INQUIRY and dry["case_id"] is None


def test_a_customer_aggregate_case_carries_the_customers_total_not_one_lineages(
    decide_review: Decide, store: str,
) -> None:
    half = {M + "expected-hours": "8000"}  # 2048 H100 × 8000 h = 5.8e25 each: below 1e26 alone, over it together
    first = decide_review(review(job("a", pods=256, annotations={**half, M + "model": "model-a"})))
    assert first.code == redflag.ALLOW
    held = decide_review(review(job("b", pods=256, annotations={**half, M + "model": "model-b"})))
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id is not None
    with session_scope(store) as s:
        case = cases.case_view(cases.get_case(s, held.case_id))
    assert case["model"].startswith(redflag.AGGREGATE_PREFIX)
    assert case["estimate"] >= case["threshold"] == 1e26
    assert case["estimate"] == pytest.approx(2 * (first.estimate or 0))
    again = decide_review(review(job("c", pods=256, annotations={**half, M + "model": "model-c"})))
    assert again.case_id == held.case_id
    with session_scope(store) as s:
        # The held job b was refused, so it is not in c's sum: the case keeps its largest total.
        assert cases.case_view(cases.get_case(s, held.case_id))["estimate"] == pytest.approx(2 * (first.estimate or 0))


def test_a_review_file_over_3_mib_is_refused_for_its_size_not_as_invalid_json(
    store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    f = tmp_path / "big.json"
    f.write_text(json.dumps({"padding": "x" * (3 * 1024 * 1024 + 1)}))
    r = veuctl("admission", "review", str(f), "--json")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "larger than" in r.stderr and "not valid JSON" not in r.stderr, r.stderr


@pytest.mark.parametrize("claimed", ["unnamed-model/US Lab", "customer-aggregate/US Lab"])
def test_a_job_naming_another_customers_ledger_bucket_as_its_model_is_refused_naming_the_annotation(
    decide_review: Decide, claimed: str,
) -> None:
    # The unnamed-model and customer-aggregate buckets are the product's own lineage keys: a customer naming
    # another's would take that name in the ledger and move the other's unnamed usage under a scoped name.
    out = decide_review(review(job("spoof", pods=8, annotations={M + "model": claimed})))
    assert not out.allowed and out.code == redflag.DENY_INVALID
    assert "annotation compute.veu-governor.io/model" in out.message and "ledger buckets" in out.message


def test_a_cases_expiry_day_is_the_utc_day_whatever_the_databases_time_zone(pg_url: str) -> None:
    # The admission path reads cases through the driver directly: on a database whose TimeZone is New York, an
    # expiry at 02:00 UTC on the 5th came back as the 4th, a day early.
    from datetime import UTC, date, datetime

    import psycopg

    from agent.store.tables.cases import RedFlagCase

    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/test", autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'")
    with session_scope(pg_url) as s:
        s.add(RedFlagCase(customer_name="Emirates AI", model_key="m-tz", status="resolved", export_intent=False,
                          resolved_by="officer", resolved_at=datetime(2026, 11, 1, tzinfo=UTC),
                          expires_at=datetime(2026, 12, 5, 2, 0, tzinfo=UTC)))
    with session_scope(pg_url) as s:
        state = cases.current_case_state(s, "Emirates AI", "m-tz", datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    assert state is not None and state.expires_on == date(2026, 12, 5)
