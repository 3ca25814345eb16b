"""The Kubernetes nodes collector against kmock (a real HTTP Kubernetes API emulator)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.collectors.k8s_nodes import ClusterConfig, NodeWatcher
from agent.inventory import sync
from agent.kb import catalog
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.kmockthread import KmockThread, node


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


def _acc(alias: str) -> str:
    return catalog().resolve(alias).accelerator.id


def _collector(k8s: KmockThread):  # type: ignore[no-untyped-def]
    return build(
        "k8s", {"clusters": [{"name": "fra-1", "api_url": k8s.url, "owner": "Acme Cloud", "operator": "Acme Ops"}]}
    )


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


def test_gfd_gke_karpenter_and_mig_labels_give_physical_chips_at_the_cluster_site(k8s: KmockThread, site: str) -> None:
    v1 = k8s.core()
    v1.create_node(
        node(
            "gfd",
            {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"},
            {"nvidia.com/gpu": "8"},
        )
    )
    # MIG "single": 56 devices of 1g.5gb are 8 physical A100s, not 56 GPUs.
    v1.create_node(
        node(
            "mig-single",
            {
                "nvidia.com/mig.strategy": "single",
                "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb",
                "nvidia.com/gpu.count": "56",
            },
            {"nvidia.com/gpu": "56"},
        )
    )
    v1.create_node(
        node(
            "gke-tpu",
            {
                "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                "cloud.google.com/gke-accelerator-count": "4",
            },
            {"google.com/tpu": "4"},
        )
    )
    v1.create_node(node("gke-gpu", {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, {"nvidia.com/gpu": "2"}))
    v1.create_node(
        node(
            "karp",
            {
                "karpenter.k8s.aws/instance-gpu-name": "a100",
                "karpenter.k8s.aws/instance-gpu-count": "8",
                "karpenter.k8s.aws/instance-gpu-memory": "81920",
            },
        )
    )
    v1.create_node(
        node("by-type", {"node.kubernetes.io/instance-type": "p5.48xlarge"}, provider_id="aws:///us-east-1a/i-1")
    )
    v1.create_node(node("cpu", {"node.kubernetes.io/instance-type": "m5.large"}, {"cpu": "2"}))

    summary = sync(_collector(k8s), site)

    assert summary.status == "ok", summary.as_dict()
    got = {k: (h.accelerator, h.count) for k, h in _live(site).items()}
    assert got == {
        "fra-1/gfd": (_acc("NVIDIA-H100-80GB-HBM3"), 8),
        "fra-1/mig-single": (_acc("A100-SXM4-40GB"), 8),
        "fra-1/gke-tpu": (_acc("tpu-v5-lite-podslice"), 4),
        "fra-1/gke-gpu": (_acc("nvidia-tesla-t4"), 2),
        "fra-1/karp": (catalog().resolve("a100", memory_mib=81920).accelerator.id, 8),
        "fra-1/by-type": (catalog().instance("aws", "p5.48xlarge").accelerator.id, 8),
    }
    with session_scope(site) as s:
        from agent.store.tables.core import Site

        assert {s.get(Site, h.site_id).name for h in _live(site).values()} == {"Frankfurt Colo"}  # type: ignore[union-attr]


def test_unlabelled_gpu_node_is_an_error_and_retires_nothing(k8s: KmockThread, site: str) -> None:
    v1 = k8s.core()
    v1.create_node(node("gfd", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}))
    sync(_collector(k8s), site)
    v1.delete_node("gfd")
    v1.create_node(node("mystery", {}, {"nvidia.com/gpu": "4"}))
    summary = sync(_collector(k8s), site)
    assert summary.status == "failed" and "mystery" in (summary.scopes[0].error or "")
    assert "fra-1/gfd" in _live(site)


def test_removed_node_is_retired_and_cluster_without_site_is_refused(k8s: KmockThread, site: str) -> None:
    v1 = k8s.core()
    for n in ("a", "b"):
        v1.create_node(node(n, {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}))
    sync(_collector(k8s), site)
    v1.delete_node("b")
    sync(_collector(k8s), site)
    assert set(_live(site)) == {"fra-1/a"}
    other = build("k8s", {"clusters": [{"name": "nowhere", "api_url": k8s.url}]})
    summary = sync(other, site)
    assert summary.status == "failed" and "nowhere" in (summary.scopes[0].error or "")


def test_watch_reports_a_node_whose_accelerators_change(k8s: KmockThread, site: str) -> None:
    v1 = k8s.core()
    v1.create_node(node("a", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}))
    changed: list[str] = []
    w = NodeWatcher(ClusterConfig(name="fra-1", api_url=k8s.url), changed.append, window_seconds=2)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    time.sleep(0.5)
    v1.patch_node("a", {"metadata": {"labels": {"unrelated": "x"}}})  # no accelerator change: no callback
    time.sleep(0.5)
    assert changed == []
    v1.create_node(node("b", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}))
    deadline = time.time() + 5
    while not changed and time.time() < deadline:
        time.sleep(0.05)
    w.stop.set()
    t.join(10)
    assert changed and changed[0] == "fra-1"
    assert w.relists == 1  # one list, then the watch carried on from its resourceVersion


@pytest.mark.parametrize(
    ("labels", "devices"),
    [
        # 1g.10gb on an A100 40GB takes 2 of 8 memory slices: 4 per GPU, so 32 devices are 8 GPUs (not 5).
        ({"nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.10gb", "nvidia.com/gpu.count": "32"}, {}),
        ({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.20gb", "nvidia.com/gpu.count": "32"}, {}),
        # A media-extension profile exists once per GPU.
        ({"nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb+me", "nvidia.com/gpu.count": "8"}, {}),
        ({"nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-2g.10gb", "nvidia.com/gpu.count": "24"}, {}),
        # Time-sliced MIG devices carry a -SHARED suffix after the profile.
        ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.10gb-SHARED", "nvidia.com/gpu.count": "32"}, {}),
        (
            {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
             "cloud.google.com/gke-gpu-partition-size": "1g.20gb"},
            {"nvidia.com/gpu": "32"},
        ),
    ],
)
def test_mig_devices_per_gpu_are_bounded_by_memory_slices_too(labels: dict[str, str], devices: dict[str, str]) -> None:
    from agent.collectors.k8s_nodes import node_accelerators

    hit = node_accelerators(labels, devices)
    assert hit is not None and hit[1] == 8


def test_gke_time_shared_gpus_count_each_physical_gpu_once() -> None:
    from agent.collectors.k8s_nodes import node_accelerators

    labels = {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
        "cloud.google.com/gke-gpu-sharing-strategy": "time-sharing",
        "cloud.google.com/gke-max-shared-clients-per-gpu": "4",
    }
    # 2 T4s shared by 4 clients each: the node advertises 8 nvidia.com/gpu.
    assert node_accelerators(labels, {"nvidia.com/gpu": "8"}) == (_acc("nvidia-tesla-t4"), 2)


def test_gpu_marked_unhealthy_is_still_held_by_its_node(k8s: KmockThread, site: str) -> None:
    v1 = k8s.core()
    n = node("gke-gpu", {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, {"nvidia.com/gpu": "4"})
    n["status"]["capacity"] = {"nvidia.com/gpu": "4"}
    v1.create_node(n)
    sync(_collector(k8s), site)
    # One GPU fails its health check: the device plugin drops it from allocatable, capacity still shows 4.
    v1.patch_node_status("gke-gpu", {"status": {"allocatable": {"nvidia.com/gpu": "3"}}})
    assert sync(_collector(k8s), site).status == "ok"
    assert _live(site)["fra-1/gke-gpu"].count == 4


def test_cloud_nodes_skip_leaves_cloud_vms_to_their_cloud_collector_so_chips_are_not_counted_twice(
    k8s: KmockThread, site: str,
) -> None:
    v1 = k8s.core()
    h100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}
    v1.create_node(node("eks-gpu", h100, provider_id="aws:///us-east-1a/i-0abc1234567890def"))
    v1.create_node(node("gke-gpu", h100, provider_id="gce://proj/us-central1-a/gke-pool-1-abcd"))
    v1.create_node(node("rack-7", h100))  # bare metal in the same cluster: no cloud collector sees it
    sync(_collector(k8s), site)
    assert set(_live(site)) == {"fra-1/eks-gpu", "fra-1/gke-gpu", "fra-1/rack-7"}  # default: every node counts
    skip = build("k8s", {"clusters": [{"name": "fra-1", "api_url": k8s.url, "owner": "Acme Cloud",
                                       "operator": "Acme Ops", "cloud_nodes": "skip"}]})
    assert sync(skip, site).status == "ok"
    assert set(_live(site)) == {"fra-1/rack-7"}  # the cloud VMs' holdings are retired here, kept by aws/gcp
    with pytest.raises(ValueError, match="cloud_nodes"):
        ClusterConfig.model_validate({"name": "x", "cloud_nodes": "sometimes"})
