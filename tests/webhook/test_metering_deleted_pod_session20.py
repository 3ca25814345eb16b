"""A pod deleted while it runs (no final status ever listed) keeps what the last pass that listed it charged.

Metering polls: a pod removed between two passes (a user's delete, its Job's ``ttlSecondsAfterFinished``, a node
drained) is charged up to the last pass that listed it, once; a later pass neither drops nor extends its interval,
and a restarted controller (nothing in memory) does not charge it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from sqlmodel import select

from agent.store import session_scope
from agent.store.tables.ledger import MeteredUsage
from controllers.metering import Meter

from .conftest import M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


@pytest.mark.asyncio
async def test_a_pod_deleted_while_running_keeps_its_interval_up_to_the_last_pass_that_listed_it(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    kmock.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)  # still served once empty
    kmock.objects["v1/nodes", None, "n1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}
    kmock.objects["v1/pods", "tenant-ae", "p-0"] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p-0", "namespace": "tenant-ae", "uid": "u-p-0", "annotations": {M + "model": "m"},
                     "labels": {"batch.kubernetes.io/job-name": "p"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]},
        "status": {"phase": "Running", "startTime": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    del kmock.objects["v1/pods", "tenant-ae", "p-0"]
    await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=1))
    await asyncio.to_thread(Meter(*apis, store).tick, NOW + timedelta(minutes=2))
    with session_scope(store) as s:
        rows = [(r.job_ref, r.chip_seconds, r.period_end.replace(tzinfo=UTC)) for r in s.exec(select(MeteredUsage))]
    # 4 H100 × 3,600 s, ending at the pass that last listed it.
    assert rows == [("tenant-ae/Job/p#p-0", 4 * 3600.0, NOW)]
