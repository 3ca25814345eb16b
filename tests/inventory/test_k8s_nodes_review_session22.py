"""Node readings the session-22 review found wrong (session 22).

- A Karpenter-provisioned Gaudi node (EKS dl1.24xlarge: ``instance-gpu-name=gaudi-hl-205``,
  ``instance-gpu-manufacturer=habana``, device ``habana.ai/gaudi``) was refused as naming two kinds of chip (its
  label is correct): it is a catalog question again.
- A hand-labelled MIG "mixed" node without ``nvidia.com/gpu.count``, some GPUs whole and some in slices, counted
  only the whole ones (4 of 8) without a word.
"""

from __future__ import annotations

import pytest

from agent.collectors.k8s_nodes import node_accelerators
from policies.errors import PolicyError

DL1 = {"karpenter.k8s.aws/instance-gpu-name": "gaudi-hl-205", "karpenter.k8s.aws/instance-gpu-manufacturer": "habana",
       "karpenter.k8s.aws/instance-gpu-count": "8"}


# First-generation Gaudi (HL-205) is catalogued since session 23 (gaudi1, its rate unconfirmed): a dl1 node is its
# 8 Gaudis, one kind of chip, not the "more than one kind" error.
def test_a_karpenter_gaudi_node_is_one_kind_of_chip() -> None:
    assert node_accelerators(DL1, {"habana.ai/gaudi": "8"}) == ("gaudi1", 8.0)


def test_a_karpenter_gaudi_of_unstated_make_is_one_kind_of_chip() -> None:
    labels = {k: v for k, v in DL1.items() if not k.endswith("manufacturer")}
    assert node_accelerators(labels, {"habana.ai/gaudi": "8"}) == ("gaudi1", 8.0)


def test_a_gaudi_beside_a_tpu_label_is_still_two_kinds() -> None:
    with pytest.raises(PolicyError, match="more than one kind"):
        node_accelerators({**DL1, "cloud.google.com/gke-tpu-accelerator": "tpu-v5p-slice"}, {"habana.ai/gaudi": "8"})


def test_mig_mixed_with_some_whole_gpus_and_no_gpu_count_is_an_error() -> None:
    labels = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    with pytest.raises(PolicyError, match=r"nvidia\.com/gpu\.count"):
        node_accelerators(labels, {"nvidia.com/gpu": "4", "nvidia.com/mig-1g.10gb": "28"})


def test_mig_mixed_with_a_gpu_count_counts_every_gpu() -> None:
    labels = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.count": "8"}
    got = node_accelerators(labels, {"nvidia.com/gpu": "4", "nvidia.com/mig-1g.10gb": "28"})
    assert got is not None and got[1] == 8
