"""A plain Pod queued by Kueue's pod integration is judged as that Pod, where metering files its usage.

Kueue's pod integration makes one Workload per plain Pod (``pod-<name>-<hash>``) whose controlling owner is
the Pod itself (``jobframework.ConstructWorkload`` sets a controller reference to the job object, here a
``v1`` Pod; kubernetes-sigs/kueue ``pkg/controller/jobs/pod/pod_controller.go``). The check judged the
Workload instead: the figures the customer declared on the Pod (Kueue copies none of them to the Workload)
were not read, so the run went to the customer's unnamed-model bucket, and the decision was filed under
``<ns>/Workload/pod-...`` while metering files the Pod's chips under ``<ns>/Pod/<name>#<name>``: the
admitted estimate and the metered usage of one run were both charged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi, EventsV1Api
from sqlmodel import select

from agent.store import session_scope
from agent.store.tables.cases import AdmissionDecision
from agent.store.tables.ledger import MeteredUsage
from controllers.kueue import CONTROLLER_NAME, AdmissionCheckController
from controllers.metering import Meter

from .conftest import M

AC = "kueue.x-k8s.io/v1beta2/admissionchecks"
WL = "kueue.x-k8s.io/v1beta2/workloads"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"


@pytest.fixture()
def client(kmock: kmock.KubernetesEmulator) -> Iterator[ApiClient]:
    kmock.resources[AC] = kmock.ResourceInfo(kind="AdmissionCheck", namespaced=False, subresources={"status"})
    kmock.resources[WL] = kmock.ResourceInfo(kind="Workload", namespaced=True, subresources={"status"})
    kmock.objects[AC, None, "red-flag-28"] = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "AdmissionCheck",
                                             "metadata": {"name": "red-flag-28", "generation": 1},
                                             "spec": {"controllerName": CONTROLLER_NAME}}
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as c:
        yield c


def _spec(gated: bool) -> dict[str, object]:
    spec: dict[str, object] = {"nodeSelector": {"nvidia.com/gpu.product": H100}, "restartPolicy": "Never",
                               "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}
    if gated:
        spec["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]
    return spec


def queued_pod(km: kmock.KubernetesEmulator, *, pod_uid: str = "pod-uid-1", owner_uid: str = "pod-uid-1") -> None:
    """A plain Pod labelled for a LocalQueue (gated by Kueue) and the Workload Kueue made of it."""
    km.objects["v1/pods", "tenant-ae", "train-0"] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "train-0", "namespace": "tenant-ae", "uid": pod_uid,
                     "labels": {"kueue.x-k8s.io/queue-name": "q", "kueue.x-k8s.io/managed": "true"},
                     "annotations": {M + "model": "declared-on-pod", M + "expected-hours": "100"}},
        "spec": _spec(gated=True), "status": {"phase": "Pending"}}
    km.objects[WL, "tenant-ae", "pod-train-0-1a2b3"] = {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
        "metadata": {"name": "pod-train-0-1a2b3", "namespace": "tenant-ae", "uid": "wl-uid-1",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "train-0", "uid": owner_uid,
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"queueName": "q", "podSets": [{"name": "main", "count": 1, "template": {"spec": _spec(False)}}]},
        "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                   "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]},
    }


def _decisions(store: str) -> list[tuple[str, str, str]]:
    with session_scope(store) as s:
        return [(d.job_ref, d.model_key, d.code) for d in s.exec(select(AdmissionDecision)).all()]


@pytest.mark.asyncio
async def test_a_plain_pod_queued_by_kueue_is_judged_as_the_pod_with_the_figures_declared_on_it(
    kmock: kmock.KubernetesEmulator, client: ApiClient, store: str,
) -> None:
    queued_pod(kmock)
    ctl = AdmissionCheckController(CustomObjectsApi(client), store, kueue_api_version="v1beta2")
    done = await asyncio.to_thread(ctl.reconcile, NOW)
    assert [(d["workload"], d["state"]) for d in done] == [("tenant-ae/pod-train-0-1a2b3", "Ready")]
    assert _decisions(store) == [("tenant-ae/Pod/train-0", "declared-on-pod", "ALLOW")]

    # Kueue ungates it; it runs: metering files its chips under the same job reference and lineage.
    pod = kmock.objects["v1/pods", "tenant-ae", "train-0"].raw
    kmock.objects["v1/pods", "tenant-ae", "train-0"] = {
        **pod, "spec": {**_spec(False), "nodeName": "gpu-node-1"},
        "status": {"phase": "Running", "startTime": (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    kmock.objects["v1/nodes", None, "gpu-node-1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "gpu-node-1", "labels": {"nvidia.com/gpu.product": H100}}}
    await asyncio.to_thread(Meter(CoreV1Api(client), EventsV1Api(client), store).tick, NOW)
    with session_scope(store) as s:
        rows = [(r.job_ref, r.chip_seconds) for r in s.exec(select(MeteredUsage)).all()]
    assert rows == [("tenant-ae/Pod/train-0#train-0", 8 * 2 * 3600.0)]


@pytest.mark.asyncio
async def test_a_workload_whose_pod_was_replaced_by_another_of_its_name_is_judged_as_the_workload(
    kmock: kmock.KubernetesEmulator, client: ApiClient, store: str,
) -> None:
    # The Pod now under that name is not the one Kueue queued (its uid differs): its figures are not this
    # Workload's; the Workload is judged, as before.
    queued_pod(kmock, pod_uid="pod-uid-2", owner_uid="pod-uid-1")
    ctl = AdmissionCheckController(CustomObjectsApi(client), store, kueue_api_version="v1beta2")
    await asyncio.to_thread(ctl.reconcile, NOW)
    assert [(ref, code) for ref, _m, code in _decisions(store)] == [("tenant-ae/Workload/pod-train-0-1a2b3", "ALLOW")]
