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
