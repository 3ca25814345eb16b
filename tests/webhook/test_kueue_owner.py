"""The Kueue AdmissionCheck judges a queued job as the webhook would, and writes its check state safely.

Kueue copies only its provisioning-request annotations from a Job to the Workload it creates, so the
figures a customer declared on the Job are read from the Job itself (the Workload's controlling owner); the
decision is filed under that Job's reference, the one metering files its pods under, so the ledger
charges max(admitted estimate, metered) and never both. The check state is written conditionally on the
Workload version it was decided on: Kueue and other check controllers write the same list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from agent import cases
from agent.store import session_scope
from controllers.kueue import CONTROLLER_NAME, AdmissionCheckController

from .conftest import M

AC = "kueue.x-k8s.io/v1beta1/admissionchecks"
WL = "kueue.x-k8s.io/v1beta1/workloads"
JOBS = "batch/v1/jobs"


@pytest.fixture()
def api(kmock: kmock.KubernetesEmulator) -> Iterator[CustomObjectsApi]:
    kmock.resources[AC] = kmock.ResourceInfo(kind="AdmissionCheck", namespaced=False, subresources={"status"})
    kmock.resources[WL] = kmock.ResourceInfo(kind="Workload", namespaced=True, subresources={"status"})
    kmock.resources[JOBS] = kmock.ResourceInfo(kind="Job", namespaced=True)
    kmock.objects[AC, None, "red-flag-28"] = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "AdmissionCheck",
                                             "metadata": {"name": "red-flag-28", "generation": 1},
                                             "spec": {"controllerName": CONTROLLER_NAME}}
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CustomObjectsApi(client)


def queued_job(km: kmock.KubernetesEmulator, name: str, *, pods: int, hours: str, model: str,
               queued_pods: int | None = None) -> None:
    """A suspended Job annotated as the webhook docs ask, and the Workload Kueue makes of it."""
    template = {"spec": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                         "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
                         "restartPolicy": "Never"}}
    km.objects[JOBS, "tenant-ae", name] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"job-{name}",
                     "labels": {"kueue.x-k8s.io/queue-name": "q"},
                     "annotations": {M + "model": model, M + "expected-hours": hours}},
        "spec": {"suspend": True, "parallelism": pods, "completions": pods, "template": template}}
    km.objects[WL, "tenant-ae", f"job-{name}-1a2b3"] = {
        "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
        "metadata": {"name": f"job-{name}-1a2b3", "namespace": "tenant-ae", "uid": f"wl-{name}",
                     "labels": {"kueue.x-k8s.io/job-uid": f"job-{name}"},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": f"job-{name}",
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"queueName": "q", "podSets": [{"name": "main", "count": queued_pods or pods, "template": template}]},
        "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                   "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]},
    }


@pytest.mark.asyncio
async def test_a_queued_job_is_judged_on_the_figures_declared_on_the_job_kueue_queued(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, store: str,
) -> None:
    # 4,096 H100 for 8,000 hours at the default utilization: 4.1e25 operations declared on the Job only.
    queued_job(kmock, "big", pods=512, hours="8000", model="declared-on-job")
    done = await asyncio.to_thread(AdmissionCheckController(api, store).reconcile)
    assert [(d["workload"], d["state"], d["code"]) for d in done] == [
        ("tenant-ae/job-big-1a2b3", "Retry", "HOLD_FOR_INQUIRY")]
    with session_scope(store) as s:
        opened = cases.list_cases(s, "open")
    assert [(c["model"], c["jobs"]) for c in opened] == [("declared-on-job", ["tenant-ae/Job/big"])]


@pytest.mark.asyncio
async def test_a_queued_workload_asking_for_more_chips_than_its_owner_reads_is_judged_on_the_workload(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, store: str,
) -> None:
    # As a TrainJob that leaves numNodes to its runtime reads as one node while Kueue's podSets carry 512:
    # the larger reading is judged.
    queued_job(kmock, "rt", pods=1, hours="8000", model="runtime-sized", queued_pods=512)
    done = await asyncio.to_thread(AdmissionCheckController(api, store).reconcile)
    assert [(d["state"], d["code"]) for d in done] == [("Retry", "HOLD_FOR_INQUIRY")]


class _Recorder:
    """A CustomObjectsApi stand-in that records status writes and can refuse them as stale (HTTP 409)."""

    def __init__(self, workload: dict[str, Any], conflict: bool = False) -> None:
        self.workload, self.conflict, self.writes = workload, conflict, []

    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> dict[str, Any]:
        if plural == "admissionchecks":
            return {"items": [{"metadata": {"name": "red-flag-28"}, "spec": {"controllerName": CONTROLLER_NAME},
                               "status": {"conditions": [{"type": "Active", "status": "True"}]}}]}
        return {"items": [self.workload]}

    def get_namespaced_custom_object(self, *a: Any) -> dict[str, Any]:
        raise ApiException(status=404, reason="Not Found")

    def patch_namespaced_custom_object_status(self, group: str, version: str, ns: str, plural: str, name: str,
                                              body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(body)
        if self.conflict:
            raise ApiException(status=409, reason="Conflict")
        return body


def _workload() -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": "w", "namespace": "tenant-ae", "uid": "wl-w", "resourceVersion": "41"},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {"spec": {"containers": [
                {"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                       "admissionChecks": [{"name": "red-flag-28", "state": "Pending"},
                                           {"name": "provisioning", "state": "Pending"}]}}


def test_the_check_state_is_written_only_over_the_workload_version_it_was_decided_on(store: str) -> None:
    api = _Recorder(_workload())
    done = AdmissionCheckController(api, store).reconcile()
    assert [d["state"] for d in done] == ["Ready"]
    # A merge patch replaces the whole list: without the version it would overwrite a state another
    # controller (Kueue, the provisioning check) wrote after this controller read the Workload.
    assert api.writes[0]["metadata"] == {"resourceVersion": "41"}


def test_a_stale_check_state_write_is_dropped_and_retried_on_the_next_pass(store: str) -> None:
    api = _Recorder(_workload(), conflict=True)
    done = AdmissionCheckController(api, store).reconcile()
    assert done == [] and len(api.writes) == 1  # refused as stale: nothing reported set, no exception
