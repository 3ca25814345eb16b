"""Session 23 (i): GPUs passed through whole to VMs (Kata / confidential containers, KubeVirt) are in the inventory.

NVIDIA's sandbox device plugin advertises a GPU bound to vfio-pci as ``nvidia.com/pgpu``, or under its PCI device
name (``nvidia.com/GH100_H100_SXM5_80GB``) when ``P_GPU_ALIAS`` is empty; KubeVirt's ``permittedHostDevices`` name
them the same way. GPU Feature Discovery does not label such nodes, so the model comes from the PCI name. An 8-GPU
HGX node passed through to VMs was counted nowhere: its chips were missing from the installed base and the caps.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.collectors.k8s_nodes import node_accelerators
from agent.inventory import sync
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.errors import PolicyError
from tests.inventory.kmockthread import KmockThread, node


@pytest.mark.parametrize(("alloc", "want"), [
    ({"nvidia.com/GH100_H100_SXM5_80GB": "8", "nvidia.com/GH100_NVSWITCH": "4"}, ("h100-sxm", 8.0)),
    ({"nvidia.com/GA100_A100_PCIE_40GB": "2"}, ("a100-pcie-40gb", 2.0)),
    ({"nvidia.com/TU104GL_Tesla_T4": "1"}, ("t4", 1.0)),
])
def test_a_node_of_passthrough_gpus_named_by_pci_device_counts_them(alloc: dict[str, str],
                                                                    want: tuple[str, float]) -> None:
    assert node_accelerators({}, alloc) == want


def test_an_unmappable_pci_name_is_an_error_naming_the_resource() -> None:
    with pytest.raises(PolicyError) as exc:
        node_accelerators({}, {"nvidia.com/GB999_Future_X9000_1TB": "8"})
    assert "nvidia.com/GB999_Future_X9000_1TB" in str(exc.value)


def test_pgpu_without_a_product_label_is_an_error_saying_how_to_name_the_model() -> None:
    # The default alias names no model, and GFD does not run on vfio nodes.
    with pytest.raises(PolicyError) as exc:
        node_accelerators({}, {"nvidia.com/pgpu": "8", "nvidia.com/nvswitch": "4"})
    msg = str(exc.value)
    assert "nvidia.com/pgpu=8" in msg and "nvidia.com/gpu.product" in msg


def test_pgpu_with_a_product_label_counts_the_passthrough_gpus() -> None:
    labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert node_accelerators(labels, {"nvidia.com/pgpu": "8"}) == ("h100-sxm", 8.0)


def test_a_node_with_two_passthrough_models_is_an_error_naming_both() -> None:
    with pytest.raises(PolicyError) as exc:
        node_accelerators({}, {"nvidia.com/GH100_H100_SXM5_80GB": "4", "nvidia.com/GA100_A100_PCIE_40GB": "4"})
    assert "GH100_H100_SXM5_80GB" in str(exc.value) and "GA100_A100_PCIE_40GB" in str(exc.value)


@pytest.fixture()
def k8s() -> Iterator[KmockThread]:
    km = KmockThread().start()
    yield km
    km.stop()


@pytest.fixture()
def site(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Abu Dhabi CC", "AE", cluster="auh-1")
    return store


def test_a_confidential_computing_node_of_passthrough_h100s_is_held(k8s: KmockThread, site: str) -> None:
    v1 = k8s.core()
    # Capacity keeps a GPU the plugin marks unhealthy; allocatable drops it.
    cc = node("cc-0", {"nvidia.com/gpu.workload.config": "vm-passthrough"},
              {"nvidia.com/GH100_H100_SXM5_80GB": "7", "nvidia.com/GH100_NVSWITCH": "4"})
    cc["status"]["capacity"] = {"nvidia.com/GH100_H100_SXM5_80GB": "8"}
    v1.create_node(cc)
    v1.create_node(node("plain", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"},
                        {"nvidia.com/gpu": "8"}))
    collector = build("k8s", {"clusters": [{"name": "auh-1", "api_url": k8s.url, "owner": "Acme Cloud"}]})
    summary = sync(collector, site)
    assert summary.status == "ok", summary.as_dict()
    with session_scope(site) as s:
        held = {h.external_id: (h.accelerator, h.count) for h in s.exec(select(Holding))}
    assert held == {"auh-1/cc-0": ("h100-sxm", 8.0), "auh-1/plain": ("h100-sxm", 8.0)}
