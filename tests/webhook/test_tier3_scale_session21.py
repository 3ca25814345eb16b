"""Session 21: a Tier 3 customer's scale-up is refused as Tier 3 (DENY_TIER3), like its CREATE."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from agent.cases import Outcome
from policies import redflag

from .conftest import job, load_sample, review
from .conftest import scale_review as _scale

Decide = Callable[..., Outcome]
LWS = ("leaderworkerset.x-k8s.io", "leaderworkersets")
PYTORCH = ("kubeflow.org", "pytorchjobs")




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
