"""`veuctl admission review`, `veuctl cases` and /api/v1/cases, /api/v1/decisions end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from agent.api.app import create_app

from .conftest import M, Result, job, review

BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}


def test_admission_review_cli_holds_then_allows_after_resolution(
    store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("llm", pods=512, annotations=BIG))))
    r = veuctl("admission", "review", str(f), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"allowed", "code", "message", "case_id", "estimate"} <= set(out)
    assert out["allowed"] is False and out["code"] == "HOLD_FOR_INQUIRY" and out["estimate"] > 1e26
    listed = json.loads(veuctl("cases", "list", "--json").stdout)
    assert [c["id"] for c in listed] == [out["case_id"]]
    bad = veuctl("cases", "resolve", str(out["case_id"]), "--export-intent", "yes", "--json")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--license" in bad.stderr
    ok = veuctl("cases", "resolve", str(out["case_id"]), "--export-intent", "yes", "--license", "D765432",
                "--scope", "weights to AE", "--by", "alice", "--json")
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(veuctl("cases", "show", str(out["case_id"]), "--json").stdout)
    assert shown["answers"]["licence_number"] == "D765432" and shown["resolved_by"] == "alice"
    again = json.loads(veuctl("admission", "review", str(f), "--json").stdout)
    assert again["allowed"] is True and again["code"] == "ALLOW_AFTER_INQUIRY"


def test_admission_review_cli_dry_run_and_as_of(store: str, tmp_path: Path, veuctl: Callable[..., Result]) -> None:
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("llm", pods=512, annotations=BIG), dry_run=True)))
    out = json.loads(veuctl("admission", "review", str(f), "--as-of", "2026-06-01", "--json").stdout)
    assert out["code"] == "HOLD_FOR_INQUIRY" and out["case_id"] is None and out["dry_run"] is True
    assert json.loads(veuctl("cases", "list", "--json").stdout) == []


def test_malformed_review_file_exits_2_with_one_line(store: str, tmp_path: Path, veuctl: Callable[..., Result]) -> None:
    for content in ("{not json", json.dumps({"kind": "AdmissionReview"}), "[" * 100_000):
        f = tmp_path / "bad.json"
        f.write_text(content)
        r = veuctl("admission", "review", str(f), "--json")
        assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("error:") and r.stderr.count("\n") == 1
    r = veuctl("admission", "review", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_cases_api_list_show_resolve_and_decisions(store: str) -> None:
    c = TestClient(create_app(store))
    r = c.post("/validate", json=review(job("llm", pods=512, annotations=BIG), uid="api-1"))
    case_id = int(r.json()["response"]["auditAnnotations"]["case"])
    assert [x["id"] for x in c.get("/api/v1/cases", params={"status": "open"}).json()] == [case_id]
    assert c.get(f"/api/v1/cases/{case_id}").json()["model"] == "frontier-1"
    assert c.get("/api/v1/cases/99999").status_code == 404
    bad = c.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "yes"})
    assert bad.status_code == 422 and "(informed)" in bad.json()["detail"] and "--" not in bad.json()["detail"]
    ok = c.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "yes", "informed": True, "by": "bob"})
    assert ok.status_code == 200 and ok.json()["answers"]["customer_informed"] is True
    again = c.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "no", "by": "eve"})
    assert again.status_code == 409 and 'set "amend": true' in again.json()["detail"], again.text
    assert c.get(f"/api/v1/cases/{case_id}").json()["resolved_by"] == "bob"  # the answers on file stand
    d = c.get("/api/v1/decisions").json()
    assert d[0]["uid"] == "api-1" and d[0]["code"] == "HOLD_FOR_INQUIRY" and d[0]["pack_versions"]
    c.post("/validate", json=review(job("small", pods=1), uid="api-2"))  # allowed: no case
    by_case = c.get("/api/v1/decisions", params={"case_id": case_id}).json()
    assert [x["uid"] for x in by_case] == ["api-1"]
    assert c.get("/api/v1/decisions", params={"case_id": 0}).status_code == 422
    assert c.get(f"/api/v1/cases/{case_id}").json()["jobs_truncated"] is False


def test_cases_page_shows_times_as_people_read_them(store: str) -> None:
    import re

    c = TestClient(create_app(store))
    r = c.post("/validate", json=review(job("llm", pods=512, annotations=BIG), uid="page-1"))
    case_id = int(r.json()["response"]["auditAnnotations"]["case"])
    page = c.get("/cases").text
    assert re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>", page), "opened time not shown as UTC minutes"
    assert "+00:00</dd>" not in page
    c.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "no", "by": "bob"})
    resolved = c.get("/cases", params={"status": "resolved"}).text
    assert re.search(r"bob at \d{4}-\d\d-\d\d \d\d:\d\d UTC; expires (\d{4}-\d\d-\d\d \d\d:\d\d UTC|never)",
                     resolved), "resolution time not shown as UTC minutes"


def test_serve_refuses_half_a_tls_pair(veuctl: Callable[..., Result], tmp_path: Path) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_text("x")
    r = veuctl("serve", "--tls-cert", str(cert))
    assert r.returncode == 2 and "--tls-key" in r.stderr
    r = veuctl("serve", "--tls-cert", str(cert), "--tls-key", str(tmp_path / "missing.key"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_a_case_with_more_jobs_than_it_lists_says_so_and_the_decisions_keep_every_one() -> None:
    from agent.cases import _MAX_CASE_JOBS, case_view
    from agent.store.tables.cases import RedFlagCase

    row = RedFlagCase(id=7, customer_name="Emirates AI", model_key="m", status="open", source="admission",
                      estimate_operations=2e26, threshold=1e26, jobs=json.dumps([f"ns/Job/j{i}" for i in range(
                          _MAX_CASE_JOBS)]), explanation="")
    view = case_view(row)
    assert view["jobs_truncated"] is True and len(view["jobs"]) == _MAX_CASE_JOBS
