"""Job-spec readers, QA session 17: accelerators requested under names the readers did not know, which counted 0
chips (the dangerous direction): AMD's partition resources (the ROCm device plugin's ``mixed`` naming strategy) and
DRA devices asked for as an implicit extended resource (``deviceclass.resource.kubernetes.io/<class>``, KEP-5004)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.cases import Outcome
from controllers.jobspec import Demand, ReadError, is_accelerator, read, vendor_of

from .conftest import review

Decide = Callable[..., Outcome]


def pod(limits: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "tenant-ae"},
            "spec": {"containers": [{"name": "c", "resources": {"limits": limits}}], **spec}}


def pytorchjob(limits: dict[str, Any], workers: int) -> dict[str, Any]:
    template = {"spec": {"containers": [{"name": "pytorch", "image": "train:1", "resources": {"limits": limits}}]}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "mi300-run", "namespace": "tenant-ae"},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": template},
                                             "Worker": {"replicas": workers, "template": template}}}}


def demand(obj: Any) -> Demand:
    d = read(obj)
    assert isinstance(d, Demand), d
    return d


def error(obj: Any) -> str:
    d = read(obj)
    assert isinstance(d, ReadError), d
    return d.message


# ROCm k8s-device-plugin docs/user-guide/configuration.md ("Mixed"): a node of 8 MI300X in CPX-NPS4 reports
# amd.com/cpx_nps4: 64; one with 5 SPX-NPS1 and 3 CPX-NPS1 GPUs reports amd.com/spx_nps1: 5 and amd.com/cpx_nps1: 24.
# The name is <current_compute_partition>_<current_memory_partition>, lower-cased (internal/pkg/amdgpu).
@pytest.mark.parametrize("resource", ["amd.com/spx_nps1", "amd.com/dpx_nps2", "amd.com/tpx_nps1", "amd.com/qpx_nps4",
                                      "amd.com/cpx_nps1", "amd.com/cpx_nps4"])
def test_amd_partitions_under_the_mixed_naming_strategy_are_amd_accelerators(resource: str) -> None:
    assert is_accelerator(resource) and vendor_of(resource) == "amd"
    d = demand(pod({resource: 8}))
    assert d.chips == 8 and [g.resource for g in d.groups] == [resource]


def test_other_amd_resources_are_still_not_chips() -> None:
    assert not is_accelerator("amd.com/xilinx_u30") and not is_accelerator("amd.com/cpx")
    assert demand(pod({"amd.com/xilinx_u30": 1})).chips == 0


def test_a_pytorchjob_on_whole_mi300x_gpus_in_spx_mode_counts_every_gpu() -> None:
    # amd.com/spx_nps1 is a whole, unpartitioned MI300X: 1 master + 15 workers × 8 = 128 GPUs, not 0.
    assert demand(pytorchjob({"amd.com/spx_nps1": 8}, 15)).chips == 128


def test_tier2_mi300x_run_through_amd_partition_resources_is_decided_with_its_chips(decide_review: Decide) -> None:
    out = decide_review(review(pytorchjob({"amd.com/spx_nps1": 8}, 15)))
    assert out.decision is not None, out.message
    assert out.decision.chips == pytest.approx(128)


# KEP-5004 (DRA extended resource, alpha 1.34, beta 1.36): a container asking for deviceclass.resource.kubernetes.io/
# <DeviceClass name> gets that many devices of the class, allocated by DRA through a ResourceClaim the scheduler makes.
def test_a_dra_device_class_asked_for_as_an_extended_resource_is_refused_naming_the_field() -> None:
    msg = error(pod({"deviceclass.resource.kubernetes.io/gpu.nvidia.com": 8}))
    assert msg.startswith("spec.containers[0].resources.limits[deviceclass.resource.kubernetes.io/gpu.nvidia.com]:")
    assert "DRA" in msg and "gpu.nvidia.com" in msg


def test_the_dra_extended_resource_is_refused_in_requests_init_containers_and_trainjob_resources() -> None:
    obj = pod({"cpu": 1}, initContainers=[{"name": "i", "resources": {
        "requests": {"deviceclass.resource.kubernetes.io/tpu.google.com": "4"}}}])
    assert error(obj).startswith(
        "spec.initContainers[0].resources.requests[deviceclass.resource.kubernetes.io/tpu.google.com]:")
    trainjob = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "t"},
                "spec": {"trainer": {"numNodes": 4, "resourcesPerNode": {
                    "limits": {"deviceclass.resource.kubernetes.io/gpu.amd.com": 8}}}}}
    assert error(trainjob).startswith(
        "spec.trainer.resourcesPerNode.limits[deviceclass.resource.kubernetes.io/gpu.amd.com]:")


def test_a_zero_dra_extended_resource_asks_for_no_device() -> None:
    assert demand(pod({"deviceclass.resource.kubernetes.io/gpu.nvidia.com": 0, "nvidia.com/gpu": 2})).chips == 2
