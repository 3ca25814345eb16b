"""Volcano Job (batch.volcano.sh/v1alpha1) tasks: the pods Volcano actually runs, per its API, webhooks and
controller (volcano-sh/apis TaskSpec; volcano pkg/webhooks/admission/jobs; pkg/controllers/job)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.cases import Outcome
from controllers.jobspec import Demand, ReadError, adds_demand, read
from policies import redflag

from .conftest import load_sample, review


def tpl(chips: Any = 8) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "t", "resources": {"limits": {"habana.ai/gaudi": chips}}}]}}


def vcjob(*tasks: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": "v", "namespace": "n"},
            "spec": {"tasks": list(tasks), **spec}}


def demand(obj: Any) -> Demand:
    d = read(obj)
    assert isinstance(d, Demand), d
    return d


def test_a_task_without_replicas_runs_no_pods_as_volcano_has_no_default() -> None:
    d = demand(vcjob({"name": "master", "template": tpl(8)}, {"name": "worker", "replicas": 3, "template": tpl(8)}))
    assert [(g.role, g.pods) for g in d.groups] == [("master", 0), ("worker", 3)]
    assert d.chips == 24
    assert any("spec.tasks[0]: no replicas" in n for n in d.notes), d.notes


def test_replicas_null_is_absent_and_replicas_zero_is_valid_and_runs_no_pods() -> None:
    assert demand(vcjob({"replicas": None, "template": tpl()})).chips == 0
    assert demand(vcjob({"replicas": 0, "template": tpl()})).chips == 0


def test_a_task_is_counted_at_its_replicas() -> None:
    assert demand(vcjob({"replicas": 5, "template": tpl(8)}, {"replicas": 1, "template": tpl(2)})).chips == 42


def test_a_task_min_available_above_its_replicas_is_counted_at_min_available() -> None:
    # Volcano's webhook refuses it, its ValidatingAdmissionPolicy lets it through when replicas is absent.
    d = demand(vcjob({"name": "w", "minAvailable": 4, "template": tpl(8)}))
    assert [(g.role, g.pods) for g in d.groups] == [("w", 4)] and d.chips == 32
    assert any("counted at its minAvailable 4" in n for n in d.notes), d.notes
    # Below replicas the gang floor adds nothing: the controller creates replicas pods.
    assert demand(vcjob({"replicas": 6, "minAvailable": 2, "template": tpl(8)})).chips == 48


def test_malformed_replicas_or_min_available_are_errors_naming_the_field() -> None:
    for field, value in (("replicas", -1), ("replicas", "4"), ("minAvailable", -2), ("minAvailable", True)):
        r = read(vcjob({"replicas": 2, field: value, "template": tpl()}))
        assert isinstance(r, ReadError) and r.message.startswith(f"spec.tasks[0].{field}:"), r


def test_an_update_that_sets_absent_replicas_adds_demand() -> None:
    # Volcano lets an UPDATE change tasks[*].replicas: from absent (0 pods) to 1 is a new pod, decided again.
    old = demand(vcjob({"name": "w", "template": tpl(8)}))
    new = demand(vcjob({"name": "w", "replicas": 1, "template": tpl(8)}))
    assert adds_demand(old, new)


def test_the_no_replicas_sample_counts_only_the_task_with_replicas(decide_review: Any) -> None:
    obj = load_sample("VolcanoJob", "no-replicas")
    out: Outcome = decide_review(review(obj))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert out.decision is not None
    assert out.decision.chips == pytest.approx(float(obj["metadata"]["annotations"][
        "samples.veu-governor.io/expected-chips"]))
