"""Session 24: a running job whose model annotation reads as a registered model's (another Unicode form, other
spacing) is metered on that model's lineage, and never stops the meter.

The ledger refuses to register a model whose name a reader cannot tell from a registered one's (two entries would
split one lineage's operations in two). Metering registers a job's model on first use: refused there, the error
ended the whole tick, so one tenant's annotation stopped every pod in the cluster from being metered.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from sqlmodel import select

import agent.ledger as ledger
from agent.store import session_scope
from agent.store.tables.ledger import LedgerModel, MeteredUsage
from controllers.metering import Meter

from .conftest import M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NFC = unicodedata.normalize("NFC", "Zoë 70B")
NFD = unicodedata.normalize("NFD", "Zoë 70B")


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def _pod(name: str, model: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"u-{name}",
                         "annotations": {M + "model": model}},
            "spec": {"nodeName": "n1", "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
            "status": {"phase": "Running", "startTime": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}}


@pytest.mark.asyncio
async def test_a_job_naming_a_look_alike_of_a_registered_model_is_metered_on_that_lineage(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    with session_scope(store) as s:
        ledger.add_model(s, NFC, "Emirates AI")
    kmock.objects["v1/nodes", None, "n1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}
    for name, model in (("look-alike", NFD), ("other", "another model")):
        kmock.objects["v1/pods", "tenant-ae", name] = _pod(name, model)
    report = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert report.pods_metered == 2, report
    with session_scope(store) as s:
        models = {m.id: m.name for m in s.exec(select(LedgerModel))}
        charged = {r.job_ref.split("#")[0].split("/")[-1]: models.get(r.model_id) for r in s.exec(select(MeteredUsage))}
    assert sorted(models.values()) == sorted([NFC, "another model"])
    assert charged == {"look-alike": NFC, "other": "another model"}
