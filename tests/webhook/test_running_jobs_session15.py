"""Running-job controllers (QA session 15): one Event per crossing, usage that stays with its customer, Kueue writes.

A crossing of the 4E091 threshold by a running lineage is reported (Event, metric) once, when its case is
opened or an unanswered case first learns of the running jobs — not again on every tick because another pod
of the lineage started, nor because the case lists only its latest job references. A pod's usage stays with
the customer it was metered for when its namespace's mapping changes mid-run: the mapping decides whose the
namespace's later jobs are, and moving the interval would erase it from the lineage it ran for. A Workload
whose check state the API server refuses is that Workload's problem alone, not every later Workload's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY
from sqlmodel import select

from agent import cases, parties
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import Party
from agent.store.tables.ledger import MeteredUsage
from controllers.kueue import AdmissionCheckController
from controllers.metering import Meter

from .conftest import KueueApi, M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"


@pytest.fixture()
def fresh_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    # The namespace -> customer directory is cached for seconds: these tests change mappings between ticks.
    monkeypatch.setattr("agent.directory.TTL", 0)


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def node(km: kmock.KubernetesEmulator, name: str = "gpu-node-1") -> None:
    km.objects["v1/nodes", None, name] = {"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": H100}}}


def pod(km: kmock.KubernetesEmulator, name: str, *, gpus: int, started: datetime, ns: str = "tenant-ae",
        job: str = "llm", model: str = "llm-big") -> None:
    km.objects["v1/pods", ns, name] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "annotations": {M + "model": model},
                     "labels": {"batch.kubernetes.io/job-name": job}},
        "spec": {"nodeName": "gpu-node-1", "containers": [
            {"name": "t", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": {"phase": "Running", "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


def events(km: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    return [o.raw for (res, _ns, _n), o in km.objects.items() if res.group == "events.k8s.io"]


def crossings() -> float:
    return REGISTRY.get_sample_value("veu_metering_threshold_crossings_total") or 0.0


def case_updates(store: str) -> int:
    with session_scope(store) as s:
        return len(s.exec(select(AuditEntry).where(AuditEntry.action == "case.update")).all())


@pytest.mark.asyncio
async def test_a_crossing_is_reported_once_when_more_pods_of_the_lineage_start_on_later_ticks(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock)
    for i in range(64):
        pod(kmock, f"llm-{i}", gpus=1024, started=NOW - timedelta(days=60))
    meter, before = Meter(*apis, store), crossings()
    first = await asyncio.to_thread(meter.tick, NOW)
    assert len(first.crossings) == 1 and len(events(kmock)) == 1
    # A failed pod replaced by its Job under a new name: the same running lineage, the same open case.
    pod(kmock, "llm-64", gpus=8, started=NOW)
    later = await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=1))
    assert later.crossings == [] and len(events(kmock)) == 1 and crossings() == before + 1
    with session_scope(store) as s:
        (case,) = cases.list_cases(s, "open")
    assert "tenant-ae/Job/llm#llm-64" in case["jobs"]  # the case still learns of the new pod


@pytest.mark.asyncio
async def test_a_lineage_running_more_pods_than_a_case_lists_is_not_reported_again_every_tick(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    # A case keeps its latest 500 job references. With 501 running pods, the one that fell off the list was
    # "new" on every tick: an Event, a metric increment and a case.update audit entry each minute.
    node(kmock)
    for i in range(501):
        pod(kmock, f"llm-{i:03d}", gpus=128, started=NOW - timedelta(days=60))
    meter, before = Meter(*apis, store), crossings()
    assert len((await asyncio.to_thread(meter.tick, NOW)).crossings) == 1
    updates = case_updates(store)
    for minute in (1, 2):
        r = await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=minute))
        assert r.crossings == []
    assert len(events(kmock)) == 1 and crossings() == before + 1
    assert case_updates(store) == updates


def usage_by_customer(store: str, job_prefix: str) -> dict[str, float]:
    with session_scope(store) as s:
        rows = s.exec(select(MeteredUsage).where(MeteredUsage.job_ref.startswith(job_prefix))).all()  # type: ignore[attr-defined]
        out: dict[str, float] = {}
        for r in rows:
            p = s.get(Party, r.customer_id) if r.customer_id is not None else None
            name = p.name if p is not None else ""
            out[name] = out.get(name, 0.0) + r.chip_seconds
        return out


@pytest.mark.asyncio
async def test_a_running_pod_stays_metered_to_its_customer_when_the_namespace_is_reassigned_mid_run(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, fresh_directory: None,
) -> None:
    node(kmock)
    pod(kmock, "train-0", gpus=8, started=NOW - timedelta(hours=10), job="train", model="ae-llm")
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    assert usage_by_customer(store, "tenant-ae/Job/train#") == {"Emirates AI": pytest.approx(8 * 10 * 3600)}
    # The operator moves the namespace to a Tier 1 customer while the Tier 2 customer's job still runs (on this
    # test's day: the mapping's history dates the move, and the meter reads whose namespace it was on its tick's day).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parties, "utc_today", lambda: NOW.date())
        with session_scope(store) as s:
            parties.add_party(s, "US Lab", "US", None, ["tenant-ae"], reassign=True)
    await asyncio.to_thread(meter.tick, NOW + timedelta(hours=1))
    # The run was admitted and metered as Emirates AI's: its hours stay on that lineage, none moved to US Lab.
    assert usage_by_customer(store, "tenant-ae/Job/train#") == {"Emirates AI": pytest.approx(8 * 11 * 3600)}
    # A job started after the move is the new customer's.
    pod(kmock, "later-0", gpus=8, started=NOW + timedelta(hours=1), job="later", model="us-llm")
    await asyncio.to_thread(meter.tick, NOW + timedelta(hours=2))
    assert usage_by_customer(store, "tenant-ae/Job/later#") == {"US Lab": pytest.approx(8 * 3600)}


@pytest.mark.asyncio
async def test_a_running_pod_is_still_metered_when_its_namespace_loses_its_customer_mid_run(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, fresh_directory: None,
) -> None:
    with session_scope(store) as s:
        parties.add_party(s, "Gulf Label Co", "AE")
        parties.sync_label_mappings(s, "c1", "compute.veu-governor.io/customer", {"tenant-lbl": "gulf-label-co"})
    node(kmock)
    pod(kmock, "train-0", gpus=8, started=NOW - timedelta(hours=10), ns="tenant-lbl", job="train", model="g-llm")
    meter = Meter(*apis, store, cluster="c1")
    await asyncio.to_thread(meter.tick, NOW)
    # The label is removed: the namespace is now no one's, but the pod that was Gulf Label Co's keeps running.
    with session_scope(store) as s:
        parties.sync_label_mappings(s, "c1", "compute.veu-governor.io/customer", {})
    r = await asyncio.to_thread(meter.tick, NOW + timedelta(hours=1))
    assert r.pods_metered == 1
    assert usage_by_customer(store, "tenant-lbl/Job/train#") == {"Gulf Label Co": pytest.approx(8 * 11 * 3600)}


class RefusingKueueApi(KueueApi):
    """The API server refuses the status write of one Workload (say, a validating webhook answers 422)."""

    def __init__(self, workloads: list[dict[str, Any]], refused: str) -> None:
        super().__init__(workloads)
        self.refused = refused

    def patch_namespaced_custom_object_status(self, group: str, version: str, ns: str, plural: str, name: str,
                                              body: dict[str, Any]) -> dict[str, Any]:
        if name == self.refused:
            raise ApiException(status=422, reason="Unprocessable Entity")
        return super().patch_namespaced_custom_object_status(group, version, ns, plural, name, body)


def queued(name: str) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"wl-{name}", "resourceVersion": "7"},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {"spec": {"containers": [
                {"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                       "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}


def test_a_workload_whose_check_state_the_api_server_refuses_does_not_hold_up_the_workloads_after_it(
    store: str,
) -> None:
    api = RefusingKueueApi([queued("first"), queued("second")], refused="first")
    done = AdmissionCheckController(api, store).reconcile()
    assert [d["workload"] for d in done] == ["tenant-ae/second"]
    assert [name for name, _body in api.writes] == ["second"]
