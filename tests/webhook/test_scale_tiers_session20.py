"""Session 20 QA: scale-ups of jobs red flag 28 does not apply to, and the wording of refusals a user acts on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.cases import Outcome, parse_declared
from policies import redflag
from policies.errors import EstimateError

from .conftest import M, load_sample, review, scale_review

HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"

Decide = Callable[..., Outcome]
LWS = ("leaderworkerset.x-k8s.io", "leaderworkersets")
PYTORCH = ("kubeflow.org", "pytorchjobs")


def _scale(resource: tuple[str, str], name: str, old: int, new: int, ns: str) -> dict[str, Any]:
    return scale_review(resource, name, old, new, ns, user=HPA)


def test_a_tier1_customers_leaderworkerset_scaled_up_by_its_hpa_is_admitted(decide_review: Decide) -> None:
    # Red flag 28 does not apply to a Tier 1 customer: re-evaluating the object at any size admits it, so refusing
    # its HPA's scale-up (which cannot "change the replicas on the object") only breaks the customer's service.
    lws = load_sample("LeaderWorkerSet", "allowed")
    lws["metadata"]["namespace"] = "tenant-us"
    assert decide_review(review(lws)).code == redflag.ALLOW
    out = decide_review(_scale(LWS, lws["metadata"]["name"], 1, 8, "tenant-us"))
    assert out.allowed, out.message
    assert "Tier 1" in out.message and "red flag 28 does not apply" in out.message


def test_a_tier1_customers_elastic_pytorchjob_scaled_beyond_its_count_is_admitted(decide_review: Decide) -> None:
    pj = load_sample("PyTorchJob", "allowed")
    pj["metadata"]["namespace"] = "tenant-us"
    assert decide_review(review(pj)).allowed
    assert decide_review(_scale(PYTORCH, pj["metadata"]["name"], 2, 64, "tenant-us")).allowed


def test_a_scale_up_in_an_exempt_namespace_is_admitted_even_without_an_admission_on_record(
    decide_review: Decide,
) -> None:
    out = decide_review(_scale(LWS, "infra-lws", 1, 4, "kube-system"))
    assert out.allowed and "exempt" in out.message


def test_a_tier2_customers_scale_up_beyond_its_count_is_still_refused(decide_review: Decide) -> None:
    lws = load_sample("LeaderWorkerSet", "allowed")
    assert decide_review(review(lws)).allowed
    out = decide_review(_scale(LWS, lws["metadata"]["name"], 1, 8, lws["metadata"]["namespace"]))
    assert not out.allowed and out.code == redflag.DENY_INVALID


def test_a_tier3_customers_scale_up_stays_refused(decide_review: Decide) -> None:
    out = decide_review(_scale(LWS, "lws", 1, 8, "tenant-mo"))
    assert not out.allowed


def test_a_scale_up_of_an_object_never_admitted_says_there_is_no_admission_on_record(decide_review: Decide) -> None:
    # "beyond the 0 leader replicas counted when LeaderWorkerSet x was admitted" described an admission that
    # never happened.
    out = decide_review(_scale(LWS, "never-seen", 1, 8, "tenant-ae"))
    assert not out.allowed and out.code == redflag.DENY_INVALID
    assert "no admission on record" in out.message and "was admitted" not in out.message
    assert "change the replicas on the LeaderWorkerSet itself" in out.message


def test_an_operation_that_is_not_gated_is_named_without_a_doubled_space(decide_review: Decide) -> None:
    body = review(load_sample("Pod", "allowed"), operation="DELETE")
    out = decide_review(body)
    assert out.allowed and out.message == "DELETE is not gated"


@pytest.mark.parametrize(("text", "written"), [("7B", "7e9"), ("1.5T", "1.5e12"), ("70b", "7e10"),
                                               ("400M", "4e8"), ("2k", "2e3")])
def test_a_count_with_a_magnitude_suffix_is_refused_with_the_number_to_write(text: str, written: str) -> None:
    with pytest.raises(EstimateError) as exc:
        parse_declared({"params": text})
    msg = str(exc.value)
    assert f"{M}params" in msg and repr(text) in msg and f"write it as {written}" in msg


def test_a_number_without_a_suffix_keeps_its_plain_refusal() -> None:
    with pytest.raises(EstimateError) as exc:
        parse_declared({"tokens": "lots"})
    assert "is not a number" in str(exc.value) and "write it as" not in str(exc.value)
