"""Session 23 (i3): how big "the whole node" is, and metering what pods are allocated, not what they can reach.

A pod reaching its node's accelerators without requesting them counts, at admission, as the node it may land on:
- a node is what one per-node source holds as one holding (a Kubernetes node, a cloud VM); the NVML collector
  holds one GPU per holding, so a host is the sum of its GPUs; a register row may be a site's total, so it sizes a
  node only when no per-node source knows the chip in the cluster, and the count is then an upper bound;
- a node is counted in whole GPUs, whatever MIG slice its chip-model label names;
- with no chip model named, the node counted is the one whose chips could do the most at the job's precision.
Metering charges what pods are allocated (their requests): access alone is skipped, with a line saying so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from sqlmodel import Session, select

from agent.cases import Outcome, _inv_cache, _node_cache, evaluate_review, resolve_chips
from agent.packs import registry
from agent.store import get_engine, session_scope
from agent.store.tables.core import Holding, Site
from agent.store.tables.ledger import MeteredUsage
from controllers.jobspec import Demand, read
from controllers.metering import Meter
from policies import redflag

from .conftest import M, review

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PRIVILEGED = {"securityContext": {"privileged": True}}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A seeded store (customers in each tier) on SQLite and on PostgreSQL, with cluster c1's site dc1."""
    _inv_cache.clear()
    _node_cache.clear()
    store = str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))
    with session_scope(store) as s:
        s.add(Site(name="dc1", country="US", cluster="c1"))
    return store


def _hold(url: str, *rows: dict[str, Any]) -> None:
    with session_scope(url) as s:
        site = s.exec(select(Site).where(Site.name == "dc1")).one()
        for r in rows:
            s.add(Holding(site_id=site.id, **r))  # type: ignore[arg-type]


def _nvml_host(host: str, acc: str, gpus: int) -> list[dict[str, Any]]:
    return [{"source": "nvml", "external_id": f"GPU-{host}-{i}", "scope": f"host:{host}", "accelerator": acc,
             "count": 1} for i in range(gpus)]


def _pod(container: dict[str, Any], selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never",
                            "containers": [{"name": "train", "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                                            **container}]}
    if selector:
        spec["nodeSelector"] = selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "frontier", "namespace": "tenant-ae"},
            "spec": spec}


def _chips(url: str, obj: dict[str, Any], precision: str = "BF16") -> tuple[list[tuple[str, float]], list[str]]:
    demand = read(obj)
    assert isinstance(demand, Demand), demand
    with Session(get_engine(url)) as s:
        out, notes = resolve_chips(s, demand, "c1", precision, unsized="raise")
    return [(c.accelerator.id, round(c.chips, 6)) for c in out], notes


H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


# --- 1. a node is what a per-node source holds as one --------------------------------------------------------------

def test_an_nvml_host_of_eight_gpus_is_an_eight_gpu_node(url: str) -> None:
    # NVML files one holding per GPU (count 1): the host is their sum, not its largest single holding.
    _hold(url, *_nvml_host("gpu01", "h100-sxm", 8), *_nvml_host("gpu02", "h100-sxm", 4))
    got, notes = _chips(url, _pod(PRIVILEGED, H100))
    assert got == [("h100-sxm", 8.0)], notes
    assert "counted as a whole node (8 × h100-sxm" in notes[0]


def test_a_register_row_of_a_site_total_does_not_size_a_node_a_kubernetes_node_knows(url: str) -> None:
    _hold(url, {"source": "csv", "external_id": "line:dc1-h100", "scope": "register:fleet.csv",
                "accelerator": "h100-sxm", "count": 512},
          {"source": "k8s", "external_id": "c1/h0", "scope": "cluster:c1", "accelerator": "h100-sxm", "count": 8})
    got, notes = _chips(url, _pod(PRIVILEGED, H100))
    assert got == [("h100-sxm", 8.0)], notes
    assert not any("upper bound" in n for n in notes)


def test_a_cloud_capacity_reservation_is_not_a_node_its_vms_are(url: str) -> None:
    # An AWS capacity reservation holds chips × free instances under no instance: several nodes, not one.
    _hold(url, {"source": "aws", "external_id": "111:cr-0abc", "scope": "111/us-east-1", "accelerator": "h100-sxm",
                "count": 64},
          {"source": "aws", "external_id": "111:i-0abc", "scope": "111/us-east-1", "accelerator": "h100-sxm",
           "count": 8, "instance": "aws:i-0abc"})
    got, _ = _chips(url, _pod(PRIVILEGED, H100))
    assert got == [("h100-sxm", 8.0)]


def test_a_chip_only_a_register_knows_is_sized_by_its_row_and_the_note_says_it_is_an_upper_bound(url: str) -> None:
    _hold(url, {"source": "csv", "external_id": "line:dc1-h100", "scope": "register:fleet.csv",
                "accelerator": "h100-sxm", "count": 64},
          {"source": "k8s", "external_id": "c1/a0", "scope": "cluster:c1", "accelerator": "a100-sxm4-80gb",
           "count": 8})
    got, notes = _chips(url, _pod(PRIVILEGED, H100))
    assert got == [("h100-sxm", 64.0)]
    assert "counted as a whole node (64 × h100-sxm" in notes[0], notes
    assert any("h100-sxm: no per-node source" in n and "an upper bound" in n for n in notes), notes


def test_a_job_sized_by_a_register_row_is_warned_that_the_count_is_an_upper_bound(url: str) -> None:
    _hold(url, {"source": "csv", "external_id": "line:dc1-h100", "scope": "register:fleet.csv",
                "accelerator": "h100-sxm", "count": 64})
    spec = {"restartPolicy": "Never", "nodeSelector": H100,
            "containers": [{"name": "train", "image": "train:1", **PRIVILEGED}]}
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "frontier", "namespace": "tenant-ae",
                        "annotations": {M + "model": "frontier", M + "expected-hours": "1"}},
           "spec": {"parallelism": 1, "template": {"spec": spec}}}
    with session_scope(url) as s:
        out: Outcome = evaluate_review(s, registry(), review(job), cluster="c1")
    assert out.decision is not None and out.decision.chips == pytest.approx(64)
    assert any("an upper bound" in w for w in out.decision.warnings), out.decision.warnings


def test_a_tier2_privileged_job_on_nvml_hosts_is_held_as_eight_gpu_nodes(url: str) -> None:
    # 512 pods × an 8-GPU H100 host for 8000 h is ~1.2e26 operations: held. Counted as 1 GPU a host it was 1.5e25.
    _hold(url, *_nvml_host("gpu01", "h100-sxm", 8))
    spec = {"restartPolicy": "Never", "nodeSelector": H100,
            "containers": [{"name": "train", "image": "train:1", **PRIVILEGED}]}
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "frontier", "namespace": "tenant-ae",
                        "annotations": {M + "model": "frontier", M + "expected-hours": "8000"}},
           "spec": {"parallelism": 512, "template": {"spec": spec}}}
    with session_scope(url) as s:
        out: Outcome = evaluate_review(s, registry(), review(job), cluster="c1")
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.decision is not None and out.decision.chips == pytest.approx(4096)


# --- 2. a node is whole GPUs, whatever MIG slice its label names ---------------------------------------------------

def test_a_privileged_pod_selecting_a_mig_single_label_counts_the_nodes_whole_gpus(url: str) -> None:
    _hold(url, {"source": "k8s", "external_id": "c1/a0", "scope": "cluster:c1", "accelerator": "a100-sxm4-40gb",
                "count": 8})
    got, notes = _chips(url, _pod(PRIVILEGED, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"}))
    assert got == [("a100-sxm4-40gb", 8.0)], notes


def test_a_privileged_pod_requesting_seven_mig_slices_on_an_unsized_cluster_counts_one_gpu(url: str) -> None:
    # Not sized by the inventory (none of that chip): the floor is what the spec shows, 7 slices = 1 GPU.
    _hold(url, {"source": "k8s", "external_id": "c1/h0", "scope": "cluster:c1", "accelerator": "h100-sxm",
                "count": 8})
    pod = _pod({**PRIVILEGED, "resources": {"limits": {"nvidia.com/gpu": 7}}},
               {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"})
    demand = read(pod)
    assert isinstance(demand, Demand)
    with Session(get_engine(url)) as s:
        out, _ = resolve_chips(s, demand, "c1", "BF16")
    assert [(c.accelerator.id, round(c.chips, 6)) for c in out] == [("a100-sxm4-40gb", 1.0)]


# --- 3. with no chip named, the node the job could do the most on --------------------------------------------------

def test_a_privileged_pod_naming_no_chip_counts_the_node_that_bounds_the_job_not_the_most_capable_chip(
        url: str) -> None:
    # A 2 × H100 PCIe dev node (2 × 756 TFLOP/s BF16) and 8 × A100 nodes (8 × 312): the A100 node bounds the job.
    _hold(url, {"source": "k8s", "external_id": "c1/dev", "scope": "cluster:c1", "accelerator": "h100-pcie",
                "count": 2},
          *({"source": "k8s", "external_id": f"c1/a{i}", "scope": "cluster:c1", "accelerator": "a100-sxm4-80gb",
             "count": 8} for i in range(2)))
    got, notes = _chips(url, _pod(PRIVILEGED))
    assert got == [("a100-sxm4-80gb", 8.0)], notes


def test_the_larger_node_of_the_better_chip_counts(url: str) -> None:
    # 2 × H100 PCIe (1512 TFLOP/s BF16), 2 × H100 SXM (1978.8) and 4 × H100 SXM (3957.6).
    _hold(url, {"source": "k8s", "external_id": "c1/p", "scope": "cluster:c1", "accelerator": "h100-pcie",
                "count": 2},
          {"source": "k8s", "external_id": "c1/s", "scope": "cluster:c1", "accelerator": "h100-sxm", "count": 2},
          {"source": "k8s", "external_id": "c1/s4", "scope": "cluster:c1", "accelerator": "h100-sxm", "count": 4})
    got, _ = _chips(url, _pod(PRIVILEGED))
    assert got == [("h100-sxm", 4.0)]


def test_a_privileged_pod_allowed_two_chip_models_counts_the_one_whose_node_bounds_the_job(url: str) -> None:
    _hold(url, {"source": "k8s", "external_id": "c1/dev", "scope": "cluster:c1", "accelerator": "h100-pcie",
                "count": 2},
          {"source": "k8s", "external_id": "c1/a0", "scope": "cluster:c1", "accelerator": "a100-sxm4-80gb",
           "count": 8})
    pod = _pod(PRIVILEGED)
    pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                                     "values": ["NVIDIA-H100-PCIe", "NVIDIA-A100-SXM4-80GB"]}]}]}}}
    got, _ = _chips(url, pod)
    assert got == [("a100-sxm4-80gb", 8.0)]


# --- 4. metering charges what pods are allocated ----------------------------------------------------------------------

@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    kmock.objects["v1/nodes", None, "gpu-node-1"] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "gpu-node-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def _running(km: kmock.KubernetesEmulator, name: str, container: dict[str, Any],
             owner: dict[str, Any] | None = None) -> None:
    md: dict[str, Any] = {"name": name, "namespace": "tenant-ae", "uid": f"uid-{name}",
                          "annotations": {M + "model": "llm-x"}}
    if owner:
        md["ownerReferences"] = [owner]
    km.objects["v1/pods", "tenant-ae", name] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": md,
        "spec": {"nodeName": "gpu-node-1", "containers": [{"name": "c", "image": "img:1", **container}]},
        "status": {"phase": "Running", "startTime": (NOW - timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ")}}


def _metered(url: str) -> dict[str, float]:
    with session_scope(url) as s:
        return {u.job_ref: u.chip_seconds for u in s.exec(select(MeteredUsage)).all()}


@pytest.mark.asyncio
async def test_a_privileged_monitoring_pod_requesting_nothing_is_not_metered_and_the_report_says_why(
        kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], url: str) -> None:
    # A DCGM-exporter-like DaemonSet pod in a customer's namespace: admission counted its access; it uses no GPU the
    # scheduler allocated, and charged the whole node it ran up the customer's lineage by 8 GPUs, per pod, forever.
    _hold(url, {"source": "k8s", "external_id": "c1/h0", "scope": "cluster:c1", "accelerator": "h100-sxm",
                "count": 8})
    _running(kmock, "dcgm-exporter-x7k2p", PRIVILEGED,
             {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "dcgm", "uid": "ds1", "controller": True})
    r = await asyncio.to_thread(Meter(*apis, url).tick, NOW)
    assert r.pods_metered == 0 and r.chip_seconds == 0
    assert _metered(url) == {}
    assert any(line.startswith("tenant-ae/dcgm-exporter-x7k2p: ") and "securityContext.privileged" in line
               and "not metered" in line for line in r.skipped), r.skipped


@pytest.mark.asyncio
@pytest.mark.parametrize("gpus", [4, 8])
async def test_a_privileged_pod_requesting_gpus_is_metered_for_what_it_requests(
        kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], url: str, gpus: int) -> None:
    _hold(url, {"source": "k8s", "external_id": "c1/h0", "scope": "cluster:c1", "accelerator": "h100-sxm",
                "count": 8})
    _running(kmock, "train-0", {**PRIVILEGED, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}})
    r = await asyncio.to_thread(Meter(*apis, url).tick, NOW)
    assert r.pods_metered == 1
    assert r.chip_seconds == pytest.approx(gpus * 10 * 3600)
    assert _metered(url) == {"tenant-ae/Pod/train-0#train-0": pytest.approx(gpus * 10 * 3600)}
