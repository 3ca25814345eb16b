"""Metering keeps a running pod on the chip it was metered on while its node's chip label is briefly gone.

NVIDIA GPU Feature Discovery removes ``nvidia.com/gpu.product`` from a node while it restarts. The node is
still listed, so the metering controller did not treat it as gone: the pod's chip came from a guess (the most
capable accelerator the request could have landed on) and its already-metered interval was re-charged to the
guessed chip, replacing the chip on record. A pod bound to a node runs on that same machine until it ends, so a
guess never replaces the chip on record; a label naming a chip still does (a correction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from sqlmodel import select

from agent.store import session_scope
from agent.store.tables.ledger import MeteredUsage
from controllers.metering import Meter

from .conftest import M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
JOB = "tenant-ae/Job/train#train-0"


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _node(km: kmock.KubernetesEmulator, product: str | None) -> None:
    labels = {"nvidia.com/gpu.product": product} if product else {}
    km.objects["v1/nodes", None, "gpu-node-1"] = {"apiVersion": "v1", "kind": "Node",
                                                  "metadata": {"name": "gpu-node-1", "labels": labels}}


def _pod(km: kmock.KubernetesEmulator, started: datetime, finished: datetime | None = None,
         allowed: list[str] | None = None) -> None:
    status: dict[str, Any] = {"phase": "Succeeded" if finished else "Running", "startTime": _ts(started)}
    if finished is not None:
        status["containerStatuses"] = [{"name": "t", "state": {"terminated": {
            "exitCode": 0, "startedAt": _ts(started), "finishedAt": _ts(finished)}}}]
    # The chip models the pod's own node affinity allows it to land on.
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": allowed}]}]}}}
    km.objects["v1/pods", "tenant-ae", "train-0"] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "train-0", "namespace": "tenant-ae", "uid": "uid-train-0",
                     "annotations": {M + "model": "llm-x"}, "labels": {"batch.kubernetes.io/job-name": "train"}},
        "spec": {"nodeName": "gpu-node-1", "containers": [
            {"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
                 **({"affinity": affinity} if allowed else {})},
        "status": status,
    }


def _rows(store: str) -> list[tuple[str, datetime, float]]:
    with session_scope(store) as s:
        return sorted((r.accelerator, r.period_end.replace(tzinfo=UTC), r.chip_seconds)
                      for r in s.exec(select(MeteredUsage).where(MeteredUsage.job_ref == JOB)).all())


@pytest.mark.asyncio
async def test_a_running_pod_stays_on_its_chip_on_record_while_its_nodes_chip_label_is_briefly_gone(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    _node(kmock, H100)
    t0 = NOW - timedelta(hours=10)
    _pod(kmock, t0)
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    ((chip, _end, _secs),) = _rows(store)
    assert chip == "h100-sxm"
    # GPU Feature Discovery restarts: the node is still there, its chip label is not (for now).
    _node(kmock, None)
    later = NOW + timedelta(minutes=1)
    await asyncio.to_thread(meter.tick, later)
    # Still one interval, on the chip the label named, charged once up to this pass.
    assert _rows(store) == [(chip, later, 8 * (10 * 3600 + 60.0))]


@pytest.mark.asyncio
async def test_a_pod_that_ends_while_its_nodes_chip_label_is_gone_is_charged_to_its_finish_on_its_chip_on_record(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    _node(kmock, H100)
    t0 = NOW - timedelta(hours=10)
    _pod(kmock, t0)
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    ((chip, _end, _secs),) = _rows(store)
    # The pod finishes while the label is gone, and a restarted controller (nothing in memory) charges it.
    finished = NOW + timedelta(minutes=30)
    _pod(kmock, t0, finished)
    _node(kmock, None)
    await asyncio.to_thread(Meter(*apis, store).tick, NOW + timedelta(hours=1))
    assert _rows(store) == [(chip, finished, 8 * 10.5 * 3600.0)]


@pytest.mark.asyncio
async def test_a_chip_label_naming_another_chip_still_replaces_the_chip_on_record(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    _node(kmock, H100)
    t0 = NOW - timedelta(hours=10)
    _pod(kmock, t0)
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    ((first, _end, _secs),) = _rows(store)
    _node(kmock, None)
    await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=1))
    # The label comes back naming a different chip: a correction, which the label is trusted to make.
    _node(kmock, A100)
    later = NOW + timedelta(minutes=2)
    await asyncio.to_thread(meter.tick, later)
    ((chip, end, secs),) = _rows(store)
    assert chip != first
    assert chip == "a100-sxm4-80gb"
    assert (end, secs) == (later, 8 * (10 * 3600 + 120.0))


@pytest.mark.asyncio
async def test_a_pod_allowed_several_chips_stays_on_the_one_its_node_named_while_the_label_is_gone(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    # The pod may land on an A100 or an H100 node; it landed on an A100 one. The most capable of the two it was
    # allowed is a guess about the machine it runs on, not what a label says of it.
    _node(kmock, A100)
    t0 = NOW - timedelta(hours=10)
    _pod(kmock, t0, allowed=[A100, H100])
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert [r[0] for r in _rows(store)] == ["a100-sxm4-80gb"]
    finished = NOW + timedelta(minutes=30)
    _pod(kmock, t0, finished, allowed=[A100, H100])
    _node(kmock, None)
    await asyncio.to_thread(Meter(*apis, store).tick, NOW + timedelta(hours=1))
    assert _rows(store) == [("a100-sxm4-80gb", finished, 8 * 10.5 * 3600.0)]
