"""Session 23 (i): what the webhook decides for a training job that reaches its nodes' GPUs without requesting them.

Such a job counts as using the whole node: the largest node of the cluster's inventory, of the chip the job names
or else the most capable one held (agent.cases.resolve_chips); with no such node in the inventory its size is
unknown and the job is refused with the reason, as a spec whose count cannot be read is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.cases import Outcome, _inv_cache, evaluate_review
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from policies import redflag

from .conftest import M, review

Decide = Callable[..., Outcome]


def _job(container: dict[str, Any], pods: int = 512, hours: str = "8000") -> dict[str, Any]:
    spec = {"restartPolicy": "Never",
            "containers": [{"name": "train", "image": "nvcr.io/nvidia/pytorch:24.05-py3", **container}]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "frontier", "namespace": "tenant-ae",
                         "annotations": {M + "model": "frontier", M + "expected-hours": hours}},
            "spec": {"parallelism": pods, "template": {"spec": spec}}}


@pytest.fixture()
def decide(store: str) -> Decide:
    def run(body: dict[str, Any]) -> Outcome:
        with session_scope(store) as s:
            return evaluate_review(s, registry(), body, cluster="c1")
    return run


def _clear_caches() -> None:
    import agent.cases

    _inv_cache.clear()
    getattr(agent.cases, "_node_cache", {}).clear()


@pytest.fixture()
def hgx_cluster(store: str) -> str:
    """Cluster c1: HGX H100 nodes of 8 GPUs and a few 4-GPU A100 nodes."""
    _clear_caches()
    with session_scope(store) as s:
        site = Site(name="dc1", country="US", cluster="c1")
        s.add(site)
        s.flush()
        for i in range(4):
            s.add(Holding(source="k8s", external_id=f"c1/h{i}", site_id=site.id, accelerator="h100-sxm",  # type: ignore[arg-type]
                          count=8))
        s.add(Holding(source="k8s", external_id="c1/a0", site_id=site.id, accelerator="a100-sxm4-80gb",  # type: ignore[arg-type]
                      count=4))
    return store


def test_tier2_training_job_with_nvidia_visible_devices_all_is_held_as_whole_nodes(hgx_cluster: str,
                                                                                    decide: Decide) -> None:
    # 512 pods × a whole 8-GPU H100 node for 8000 h is ~1.2e26 operations: over 1e26, held for inquiry.
    out = decide(review(_job({"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]})))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.decision is not None and out.decision.chips == pytest.approx(4096)
    assert any("NVIDIA_VISIBLE_DEVICES=all reaches the node's GPUs without requesting them: counted as a whole "
               "node (8 × h100-sxm" in w for w in out.decision.warnings), out.decision.warnings


def test_privileged_training_job_is_held_as_whole_nodes(hgx_cluster: str, decide: Decide) -> None:
    out = decide(review(_job({"securityContext": {"privileged": True}})))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message


def test_whole_node_job_in_a_cluster_with_no_inventory_is_refused_with_the_reason(store: str, decide: Decide) -> None:
    _clear_caches()
    out = decide(review(_job({"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}, pods=1, hours="1")))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message
    assert "spec.template.spec.containers[0].env[0] NVIDIA_VISIBLE_DEVICES=all" in out.message
    assert "NVIDIA_VISIBLE_DEVICES=void" in out.message


def test_exempt_namespace_pod_reaching_gpus_is_still_exempt(hgx_cluster: str, decide: Decide) -> None:
    # The GPU operator's DaemonSets are privileged and mount /dev: exempt namespaces are exempt before any count.
    job = _job({"securityContext": {"privileged": True}})
    out = decide(review(job, namespace="kube-system"))
    assert out.allowed
