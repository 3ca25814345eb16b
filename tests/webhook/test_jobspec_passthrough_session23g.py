"""Session 23 (g): GPUs passed through whole to a VM-isolated pod (Kata, confidential containers, KubeVirt).

NVIDIA's sandbox device plugin (GPU Operator ``sandboxWorkloads``) advertises a GPU bound to vfio-pci as
``nvidia.com/pgpu`` by default, or under its PCI device name (``nvidia.com/GH100_H100L_94GB``) when
``P_GPU_ALIAS`` is empty; KubeVirt's ``permittedHostDevices`` use the same naming (``nvidia.com/TU104GL_Tesla_T4``).
Each is one whole physical GPU, and HGX systems pass eight to one pod with the NVSwitches as
``nvidia.com/nvswitch`` (kata-containers docs/use-cases/NVIDIA-GPU-passthrough-and-Kata-QEMU.md). A pod asking for
them trains on those GPUs: counted as 0 chips, any such job would be let through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.cases import Outcome
from controllers.jobspec import Demand, read
from policies import redflag

from .conftest import M, review

Decide = Callable[..., Outcome]
PRODUCT = "nvidia.com/gpu.product"


def _pod(limits: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    # The Kata CoCo sample pod of the upstream guide, as a training pod on an HGX H100 node.
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "cc-train", "namespace": "tenant-ae", "annotations": dict(annotations or {})},
            "spec": {"runtimeClassName": "kata-qemu-nvidia-gpu-snp", "restartPolicy": "Never",
                     "nodeSelector": {PRODUCT: "NVIDIA-H100-80GB-HBM3"},
                     "containers": [{"name": "train", "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                                     "resources": {"limits": {**limits, "memory": "1Ti"}}}]}}


def _chips(obj: dict[str, Any]) -> dict[str, float]:
    d = read(obj)
    assert isinstance(d, Demand), d
    return {g.resource: g.total for g in d.groups}


def test_a_confidential_computing_pod_with_eight_passthrough_gpus_counts_eight_chips() -> None:
    # Multi-GPU passthrough on HGX Hopper: "8 pgpu and 4 nvswitch resources"; the switches are not chips.
    assert _chips(_pod({"nvidia.com/pgpu": 8, "nvidia.com/nvswitch": 4})) == {"nvidia.com/pgpu": 8}


@pytest.mark.parametrize("resource", ["nvidia.com/GH100_H100L_94GB", "nvidia.com/GH100_H100_SXM5_80GB",
                                      "nvidia.com/GA100_A100_PCIE_40GB", "nvidia.com/TU104GL_Tesla_T4",
                                      "nvidia.com/GV100GL_Tesla_V100", "nvidia.com/GRID_T4-1Q"])
def test_a_gpu_passed_through_under_its_pci_device_name_is_a_chip(resource: str) -> None:
    assert _chips(_pod({resource: 4})) == {resource: 4}


def test_nvidia_network_and_switch_devices_are_not_chips() -> None:
    # NVIDIA Network Operator / SR-IOV resources share the nvidia.com prefix; a training pod asks for them beside
    # its GPUs, and they must not add to the chip count.
    limits = {"nvidia.com/gpu": 8, "nvidia.com/hostdev": 1, "nvidia.com/rdma_shared_device_a": 1,
              "nvidia.com/nvswitch": 4}
    assert _chips(_pod(limits)) == {"nvidia.com/gpu": 8}


def test_tier2_customer_training_on_passthrough_gpus_over_1e26_is_held_for_inquiry(decide_review: Decide) -> None:
    # 512 pods × 8 passed-through H100s for 8000 h is ~1.2e26 operations, the same job as on nvidia.com/gpu.
    pod_template = _pod({"nvidia.com/pgpu": 8})
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "cc-frontier", "namespace": "tenant-ae",
                        "annotations": {M + "model": "cc-frontier", M + "expected-hours": "8000"}},
           "spec": {"parallelism": 512, "template": {"spec": pod_template["spec"]}}}
    out = decide_review(review(job))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.decision is not None and out.decision.chips == pytest.approx(4096)
