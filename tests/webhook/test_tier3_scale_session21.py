"""Session 21: a Tier 3 customer's scale-up is refused as Tier 3 (DENY_TIER3), like its CREATE."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from agent.cases import Outcome
from policies import redflag

from .conftest import job, load_sample, review

Decide = Callable[..., Outcome]
LWS = ("leaderworkerset.x-k8s.io", "leaderworkersets")
PYTORCH = ("kubeflow.org", "pytorchjobs")


def _scale(resource: tuple[str, str], name: str, old: int, new: int, ns: str) -> dict[str, Any]:
    def scale(n: int) -> dict[str, Any]:
        return {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": n}}
    group, plural = resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "resource": {"group": group, "version": "v1", "resource": plural}, "subResource": "scale",
        "name": name, "namespace": ns, "operation": "UPDATE",
        "userInfo": {"username": "alice@example.com"},
        "object": scale(new), "oldObject": scale(old), "dryRun": False}}


# The scale subresource is judged in agent.cases._read_scale, outside this session's files: the fix (redflag.decide's
# ``uncounted`` for a Tier 3 customer there) is proposed in the session's report. Strict: fails loudly once it lands.
@pytest.mark.parametrize("ns", ["tenant-mo", "tenant-gb-mo"])
@pytest.mark.parametrize("resource", [LWS, PYTORCH])
def test_a_tier3_customers_scale_up_is_denied_as_tier3(decide_review: Decide, ns: str,
                                                       resource: tuple[str, str]) -> None:
    out = decide_review(_scale(resource, "big", 1, 8, ns))
    assert not out.allowed
    assert out.code == redflag.DENY_TIER3, out.message
    assert "Tier 3" in out.message and "refused" in out.message


@pytest.mark.parametrize("ns", ["tenant-mo", "tenant-gb-mo"])
def test_a_tier3_customers_spec_update_raising_parallelism_is_denied_as_tier3(decide_review: Decide, ns: str) -> None:
    old = job("grow", ns, pods=1)
    new = copy.deepcopy(old)
    new["spec"]["parallelism"] = 64
    body = review(new, operation="UPDATE")
    body["request"]["oldObject"] = old
    out = decide_review(body)
    assert not out.allowed
    assert out.code == redflag.DENY_TIER3, out.message


def test_a_tier3_customers_pytorchjob_update_raising_workers_is_denied_as_tier3(decide_review: Decide) -> None:
    old = load_sample("PyTorchJob", "allowed")
    old["metadata"]["namespace"] = "tenant-mo"
    new = copy.deepcopy(old)
    specs = new["spec"]["pytorchReplicaSpecs"]
    specs["Worker"]["replicas"] = int(specs["Worker"].get("replicas", 1)) + 16
    body = review(new, operation="UPDATE")
    body["request"]["oldObject"] = old
    out = decide_review(body)
    assert not out.allowed and out.code == redflag.DENY_TIER3, out.message


def test_a_tier3_scale_up_admitted_in_warn_mode_does_not_open_the_next_one(
    decide_review: Decide, overlay_mode: Callable[..., None],
) -> None:
    # Recorded allowed (warn) with no chips counted: the next scale-up must not read it as "admitted without
    # accelerators" and pass unwarned.
    overlay_mode("warn")
    first = decide_review(_scale(LWS, "grow", 1, 8, "tenant-mo"))
    assert first.allowed and first.code == redflag.DENY_TIER3
    assert any("DENY_TIER3" in w for w in first.warnings)
    again = decide_review(_scale(LWS, "grow", 8, 16, "tenant-mo"))
    assert again.code == redflag.DENY_TIER3 and any("DENY_TIER3" in w for w in again.warnings), again.message
