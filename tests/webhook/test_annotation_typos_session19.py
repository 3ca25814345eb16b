"""Annotations under compute.veu-governor.io/ that the product does not read are warned about (never silently
ignored, never a refusal); declared operations and 6·N·D both given count at the larger, and half of 6·N·D is
named as unused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.cases import Outcome
from agent.store import session_scope
from agent.store.tables.cases import AdmissionDecision
from controllers.jobspec import ANNOTATION_KEYS, Demand, read
from policies import redflag

from .conftest import M, Result, job, review

Decide = Callable[..., Outcome]
BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}  # 4096 H100 × 8000 h: held


def _typo_warning(warnings: list[str], key: str) -> str:
    found = [w for w in warnings if M + key in w]
    assert len(found) == 1, warnings
    return found[0]


def test_a_misspelt_model_annotation_is_warned_with_did_you_mean_and_the_keys_read(decide_review: Decide) -> None:
    out = decide_review(review(job("typo", pods=1, annotations={M + "modle": "lumen-x"})))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    w = _typo_warning(out.warnings, "modle")
    assert "did you mean model?" in w
    assert all(k in w for k in ANNOTATION_KEYS), w
    # The decision is unchanged: the job still counts in the customer's unnamed-model bucket.
    assert out.decision is not None and out.decision.model_key == f"{redflag.UNNAMED_PREFIX}Emirates AI"


def test_a_misspelt_annotation_does_not_change_the_decision_of_a_held_job(decide_review: Decide) -> None:
    plain = decide_review(review(job("big", pods=512, annotations=BIG), dry_run=True))
    typo = decide_review(review(job("big", pods=512, annotations={**BIG, M + "expected-hour": "1"}), dry_run=True))
    assert typo.code == plain.code == redflag.HOLD_FOR_INQUIRY
    assert typo.estimate == plain.estimate
    assert "did you mean expected-hours?" in _typo_warning(typo.warnings, "expected-hour")


def test_an_annotation_from_a_newer_release_is_warned_and_admitted(decide_review: Decide) -> None:
    plain = decide_review(review(job("new", pods=1, annotations={M + "model": "m"}), dry_run=True))
    newer = decide_review(review(job("new", pods=1, annotations={M + "model": "m", M + "dataset-licence": "cc-by"}),
                                 dry_run=True))
    assert newer.allowed and newer.code == plain.code == redflag.ALLOW
    assert newer.estimate == plain.estimate
    w = _typo_warning(newer.warnings, "dataset-licence")
    assert "did you mean" not in w and all(k in w for k in ANNOTATION_KEYS)


def test_known_and_foreign_annotations_raise_no_warning(decide_review: Decide) -> None:
    ann = {M + "model": "m", M + "tokens": "1e12", M + "params": "1e9", "kubectl.kubernetes.io/restartedAt": "now",
           "compute.veu-governor.iox/modle": "x"}
    out = decide_review(review(job("fine", pods=1, annotations=ann), dry_run=True))
    assert out.allowed and not [w for w in out.warnings if "annotation" in w], out.warnings


def test_a_misspelt_annotation_on_the_pod_template_is_warned_too() -> None:
    obj = job("tpl", pods=1)
    obj["spec"]["template"]["metadata"] = {"annotations": {M + "tokns": "1e12"}}
    demand = read(obj)
    assert isinstance(demand, Demand)
    assert "did you mean tokens?" in demand.notes[0]


def test_the_unknown_annotation_warning_comes_before_the_readers_notes() -> None:
    # redflag.decide keeps the first notes as warnings: the annotation's must not be pushed out by counting notes.
    obj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
           "metadata": {"name": "t", "namespace": "tenant-ae", "annotations": {M + "modle": "x"}},
           "spec": {"trainer": {"resourcesPerNode": {"limits": {"nvidia.com/gpu": 8}}}}}
    demand = read(obj)
    assert isinstance(demand, Demand) and len(demand.notes) == 2
    assert M + "modle" in demand.notes[0] and "numNodes" in demand.notes[1]


def test_the_unknown_annotation_warning_reaches_the_admission_response_and_the_recorded_decision(store: str) -> None:
    c = TestClient(create_app(store))
    body = review(job("typo", pods=1, annotations={M + "modle": "lumen-x"}), uid="typo-1")
    resp = c.post("/validate", json=body).json()["response"]
    assert resp["allowed"] is True
    assert "did you mean model?" in _typo_warning(resp["warnings"], "modle")
    with session_scope(store) as s:
        row = s.exec(select(AdmissionDecision).where(AdmissionDecision.uid == "typo-1")).one()
        detail: dict[str, Any] = json.loads(row.detail or "{}")
    assert "did you mean model?" in _typo_warning(detail["warnings"], "modle")
    assert row.model_key == f"{redflag.UNNAMED_PREFIX}Emirates AI"


def test_the_unknown_annotation_warning_is_in_the_cli_review_json(
    store: str, tmp_path: Path, veuctl: Callable[..., Result],
) -> None:
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("typo", pods=1, annotations={M + "modle": "lumen-x"}))))
    r = veuctl("admission", "review", str(f), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["allowed"] is True and "did you mean model?" in _typo_warning(out["warnings"], "modle")


def test_declared_operations_and_6nd_both_given_count_at_the_larger_and_say_so(decide_review: Decide) -> None:
    # 6 × 1e12 × 2e13 = 1.2e26 over the declared 1e24: the larger holds the job, and neither is dropped unseen.
    ann = {M + "model": "m", M + "operations": "1e24", M + "params": "1e12", M + "tokens": "2e13"}
    out = decide_review(review(job("mix", pods=1, annotations=ann)))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    both = [w for w in out.warnings if "6·N·D" in w and M + "operations" in w]
    assert both and "the larger, 1.2e26" in both[0] and "the larger" in both[0], out.warnings
    # The other way round: the declared operations are the larger and count.
    ann = {M + "model": "m2", M + "operations": "2e26", M + "params": "7e10", M + "tokens": "1e13"}
    out = decide_review(review(job("mix2", pods=1, annotations=ann)))
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.estimate is not None and out.estimate >= 2e26


@pytest.mark.parametrize("figures,unused", [
    ({"operations": "3e24", "tokens": "1e13"}, "tokens"),
    ({"operations": "3e24", "active-params": "1e10"}, "active-params"),
    ({"tokens": "1e13"}, "tokens"),
    ({"params": "7e10"}, "params"),
])
def test_half_of_6nd_is_named_as_unused_not_ignored_silently(
    decide_review: Decide, figures: dict[str, str], unused: str,
) -> None:
    ann = {M + "model": "m", **{M + k: v for k, v in figures.items()}}
    out = decide_review(review(job("half", pods=1, annotations=ann)))
    assert out.allowed, out.message
    assert any(f"{M}{unused} is not used" in w for w in out.warnings), out.warnings


@pytest.mark.parametrize("figures", [{"operations": "3e24"}, {"params": "7e10", "tokens": "1e13"}])
def test_one_declared_method_is_still_admitted(decide_review: Decide, figures: dict[str, str]) -> None:
    ann = {M + "model": "m", **{M + k: v for k, v in figures.items()}}
    out = decide_review(review(job("one", pods=1, annotations=ann)))
    assert out.allowed and out.code == redflag.ALLOW, out.message
