"""Which chips a job's accelerators are counted as: the model its node labels name, else the most capable chip
the pods could land on (red flag 28's hardware bound must not be steered down by what the job declares)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from agent.cases import _inv_cache, resolve_chips
from agent.store import get_engine, session_scope
from agent.store.tables.core import Holding, Site
from controllers.jobspec import Demand, read


def pod(limits: dict[str, Any], node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"limits": limits}}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "tenant-ae"}, "spec": spec}


@pytest.fixture()
def cluster(db_url: str) -> str:
    """A cluster holding Gaudi 2 and Gaudi 3 nodes, H100s and T4s."""
    _inv_cache.clear()
    with session_scope(db_url) as s:
        site = Site(name="dc1", country="US", cluster="c1")
        s.add(site)
        s.flush()
        for i, acc in enumerate(("gaudi2", "gaudi3", "h100-sxm", "t4")):
            s.add(Holding(source="test", external_id=f"n{i}", site_id=site.id, accelerator=acc, count=8))  # type: ignore[arg-type]
    return db_url


def chips(url: str, obj: dict[str, Any], precision: str = "BF16") -> tuple[list[tuple[str, float]], list[str]]:
    demand = read(obj)
    assert isinstance(demand, Demand), demand
    with Session(get_engine(url)) as s:
        out, notes = resolve_chips(s, demand, "c1", precision)
    return [(c.accelerator.id, c.chips) for c in out], notes


@pytest.mark.parametrize("precision", ["BF16", "FP16", "FP8"])
def test_the_declared_precision_does_not_steer_the_bound_to_an_older_chip(cluster: str, precision: str) -> None:
    got, _ = chips(cluster, pod({"habana.ai/gaudi": 8}), precision)
    assert got == [("gaudi3", 8.0)]


def test_a_chip_label_the_catalog_does_not_know_lets_the_inventory_bound_count_when_it_is_higher(cluster: str) -> None:
    # Tesla-T4 or an unknown future model: the pod may land on the unknown one, which may be an H100-class chip.
    obj = pod({"nvidia.com/gpu": 8})
    obj["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                                     "values": ["Tesla-T4", "NVIDIA-Future-X9000"]}]}]}}}
    got, notes = chips(cluster, obj)
    assert got == [("h100-sxm", 8.0)]
    assert any("NVIDIA-Future-X9000" in n and "not in the accelerator catalog" in n for n in notes)


def test_known_chip_labels_alone_are_taken_at_their_word(cluster: str) -> None:
    got, _ = chips(cluster, pod({"nvidia.com/gpu": 8}, {"nvidia.com/gpu.product": "Tesla-T4"}))
    assert got == [("t4", 8.0)]


def test_mig_single_strategy_counts_nvidia_gpu_as_slices_of_the_labelled_chip(cluster: str) -> None:
    # Under the "single" MIG strategy nvidia.com/gpu counts slices and the product label names the profile.
    got, _ = chips(cluster, pod({"nvidia.com/gpu": 7}, {"nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb"}))
    assert len(got) == 1 and got[0][0] == "a100-sxm4-40gb" and got[0][1] == pytest.approx(1.0)
