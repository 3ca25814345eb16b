"""Session 22g QA of the Kubernetes nodes collector: count labels that are no count, nodes naming two kinds of chip."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.collectors.k8s_nodes import node_accelerators
from agent.inventory import sync
from agent.kb import catalog
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.errors import PolicyError
from tests.inventory.kmockthread import KmockThread, node

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


@pytest.mark.parametrize(("labels", "key"), [
    ({**H100, "nvidia.com/gpu.count": "nan"}, "nvidia.com/gpu.count"),
    ({**H100, "nvidia.com/gpu.count": "inf"}, "nvidia.com/gpu.count"),
    ({**H100, "nvidia.com/gpu.count": "-8"}, "nvidia.com/gpu.count"),
    ({**H100, "nvidia.com/gpu.count": "2.5"}, "nvidia.com/gpu.count"),
    ({**H100, "nvidia.com/gpu.count": "1e3"}, "nvidia.com/gpu.count"),
    ({**H100, "nvidia.com/gpu.replicas": "inf"}, "nvidia.com/gpu.replicas"),
    ({"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
      "cloud.google.com/gke-accelerator-count": "4.5"}, "cloud.google.com/gke-accelerator-count"),
    ({"cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
      "cloud.google.com/gke-max-shared-clients-per-gpu": "inf"}, "cloud.google.com/gke-max-shared-clients-per-gpu"),
    ({"karpenter.k8s.aws/instance-gpu-name": "a100", "karpenter.k8s.aws/instance-gpu-count": "-1"},
     "karpenter.k8s.aws/instance-gpu-count"),
    ({"karpenter.k8s.aws/instance-gpu-name": "a100", "karpenter.k8s.aws/instance-gpu-count": "8",
      "karpenter.k8s.aws/instance-gpu-memory": "inf"}, "karpenter.k8s.aws/instance-gpu-memory"),
    ({"karpenter.k8s.aws/instance-accelerator-name": "trainium",
      "karpenter.k8s.aws/instance-accelerator-count": "nan"}, "karpenter.k8s.aws/instance-accelerator-count"),
], ids=["nan", "inf", "negative", "fraction", "exponent", "replicas-inf", "gke-tpu-fraction", "gke-shared-inf",
        "karpenter-negative", "karpenter-memory-inf", "neuron-nan"])
def test_a_count_label_that_is_not_a_whole_number_is_an_error_naming_the_label(
    labels: dict[str, str], key: str
) -> None:
    # "nan" was stored as NaN chips (the installed base's TPP became NaN), "inf" as infinite chips, "-8" dropped an
    # 8-GPU node silently, "2.5" counted half a GPU; a karpenter memory of "inf" raised OverflowError, which failed
    # the whole cluster's listing rather than this node.
    alloc = {"nvidia.com/gpu": "8", "google.com/tpu": "4", "aws.amazon.com/neuron": "16"}
    kind = (labels.get("cloud.google.com/gke-tpu-accelerator") and "google.com/tpu") or (
        "aws.amazon.com/neuron" if "karpenter.k8s.aws/instance-accelerator-name" in labels else "nvidia.com/gpu")
    with pytest.raises(PolicyError) as exc:
        node_accelerators(labels, {kind: alloc[kind]})
    msg = str(exc.value)
    assert key in msg and labels[key] in msg and "whole number" in msg


@pytest.mark.parametrize(("labels", "count"), [
    ({**H100, "nvidia.com/gpu.count": "8"}, 8.0),
    ({**H100, "nvidia.com/gpu.count": " 8 "}, 8.0),
    ({**H100, "nvidia.com/gpu.count": "0"}, 8.0),  # 0 falls back to the devices advertised, as before
    ({**H100, "nvidia.com/gpu.replicas": "4"}, 2.0),
])
def test_plain_count_labels_still_count(labels: dict[str, str], count: float) -> None:
    alloc = {"nvidia.com/gpu": "8"}
    assert node_accelerators(labels, alloc) == (catalog().resolve("NVIDIA-H100-80GB-HBM3").accelerator.id, count)


@pytest.mark.parametrize(("labels", "alloc", "named"), [
    ({**H100, "nvidia.com/gpu.count": "8", "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
      "cloud.google.com/gke-accelerator-count": "4"}, {"nvidia.com/gpu": "8", "google.com/tpu": "4"},
     ("nvidia.com/gpu.product", "cloud.google.com/gke-tpu-accelerator")),
    ({**H100, "nvidia.com/gpu.count": "8"}, {"google.com/tpu": "4"}, ("nvidia.com/gpu.product", "google.com/tpu")),
    ({"cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
      "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"}, {"nvidia.com/gpu": "8", "google.com/tpu": "4"},
     ("cloud.google.com/gke-accelerator", "cloud.google.com/gke-tpu-accelerator")),
    ({"karpenter.k8s.aws/instance-gpu-name": "a100", "karpenter.k8s.aws/instance-gpu-count": "8",
      "karpenter.k8s.aws/instance-accelerator-name": "trainium", "karpenter.k8s.aws/instance-accelerator-count": "16"},
     {}, ("karpenter.k8s.aws/instance-gpu-name", "karpenter.k8s.aws/instance-accelerator-name")),
    ({"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM", **H100}, {"amd.com/gpu": "8"},
     ("amd.com/gpu.product-name", "nvidia.com/gpu.product")),
], ids=["gfd-and-gke-tpu", "gfd-label-tpu-devices", "gke-gpu-and-tpu", "karpenter-gpu-and-neuron", "amd-and-gfd"])
def test_a_node_naming_two_kinds_of_accelerator_is_an_error_naming_both(
    labels: dict[str, str], alloc: dict[str, str], named: tuple[str, str]
) -> None:
    # The first label family in precedence won and the other chips were dropped without a word (a stale GFD label
    # on a node re-imaged as a TPU host counted 8 H100s and no TPU).
    with pytest.raises(PolicyError) as exc:
        node_accelerators(labels, alloc)
    msg = str(exc.value)
    assert all(k in msg for k in named), msg
    assert "kubectl label node" in msg


@pytest.mark.parametrize(("labels", "alloc"), [
    # One kind named by several label families is one chip, not a conflict.
    ({**H100, "nvidia.com/gpu.count": "8", "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
     {"nvidia.com/gpu": "8"}),
    ({**H100, "nvidia.com/gpu.count": "8", "karpenter.k8s.aws/instance-gpu-name": "h100",
      "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia", "karpenter.k8s.aws/instance-gpu-count": "8"},
     {"nvidia.com/gpu": "8"}),
    ({"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice", "cloud.google.com/gke-accelerator-count": "4"},
     {"google.com/tpu": "4"}),
    ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.count": "8"},
     {"nvidia.com/gpu": "0", "nvidia.com/mig-1g.10gb": "56"}),
], ids=["gfd-and-gke", "gfd-and-karpenter", "gke-tpu", "mig-mixed"])
def test_one_kind_named_by_several_label_families_still_counts(labels: dict[str, str], alloc: dict[str, str]) -> None:
    hit = node_accelerators(labels, alloc)
    assert hit is not None and hit[1] > 0


@pytest.fixture()
def k8s() -> Iterator[KmockThread]:
    km = KmockThread().start()
    yield km
    km.stop()


@pytest.fixture()
def site(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Frankfurt Colo", "DE", cluster="fra-1")
    return store


def test_a_node_with_a_nan_count_label_is_named_and_no_nan_chips_are_stored(k8s: KmockThread, site: str) -> None:
    v1 = k8s.core()
    v1.create_node(node("good", {**H100, "nvidia.com/gpu.count": "8"}, {"nvidia.com/gpu": "8"}))
    v1.create_node(node("odd", {**H100, "nvidia.com/gpu.count": "nan"}, {"nvidia.com/gpu": "8"}))
    v1.create_node(node("both", {**H100, "nvidia.com/gpu.count": "8",
                                 "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"},
                        {"nvidia.com/gpu": "8", "google.com/tpu": "4"}))
    collector = build("k8s", {"clusters": [{"name": "fra-1", "api_url": k8s.url, "owner": "Acme Cloud"}]})
    summary = sync(collector, site)
    assert summary.status == "partial", summary.as_dict()
    error = summary.scopes[0].error or ""
    assert "node odd:" in error and "nvidia.com/gpu.count" in error
    assert "node both:" in error
    with session_scope(site) as s:
        held = {h.external_id: h.count for h in s.exec(select(Holding))}
    assert held == {"fra-1/good": 8.0}
    assert not any(math.isnan(c) for c in held.values())
