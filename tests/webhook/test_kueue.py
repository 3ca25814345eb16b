"""The Kueue AdmissionCheck controller against kmock: Active checks, Ready / Retry / Rejected workloads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi

from agent import cases
from agent.packs import registry
from agent.store import session_scope
from controllers.kueue import CONTROLLER_NAME, AdmissionCheckController, check_state

from .conftest import M

AC = "kueue.x-k8s.io/v1beta1/admissionchecks"
WL = "kueue.x-k8s.io/v1beta1/workloads"
RESERVED = {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": "Quota reserved"}


@pytest.fixture()
def api(kmock: kmock.KubernetesEmulator) -> Iterator[CustomObjectsApi]:
    kmock.resources[AC] = kmock.ResourceInfo(kind="AdmissionCheck", namespaced=False, subresources={"status"})
    kmock.resources[WL] = kmock.ResourceInfo(kind="Workload", namespaced=True, subresources={"status"})
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CustomObjectsApi(client)


def workload(km: kmock.KubernetesEmulator, ns: str, name: str, count: int, hours: str) -> None:
    km.objects[WL, ns, name] = {
        "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                     "annotations": {M + "model": f"{name}-model", M + "expected-hours": hours},
                     # As Kueue creates it: owned by the (suspended, ungated) Job it queues.
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": f"job-{name}",
                                          "controller": True}]},
        "spec": {"queueName": "q", "podSets": [{"name": "main", "count": count, "template": {"spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "containers": [{"name": "t", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}}]},
        # Kueue reserved quota and now waits for the checks.
        "status": {"conditions": [RESERVED],
                   "admissionChecks": [{"name": "red-flag-28", "state": "Pending"},
                                       {"name": "provisioning", "state": "Pending"}]},
    }


def state(km: kmock.KubernetesEmulator, ns: str, name: str) -> dict[str, Any]:
    raw = km.objects[WL, ns, name].raw
    return {s["name"]: s["state"] for s in raw["status"]["admissionChecks"]}


def test_decision_codes_map_to_check_states() -> None:
    assert check_state(True, "ALLOW") == "Ready" and check_state(False, "HOLD_FOR_INQUIRY") == "Retry"
    assert check_state(False, "DENY_TIER3") == "Rejected" and check_state(True, "HOLD_FOR_INQUIRY") == "Ready"


def test_a_workload_in_a_namespace_without_a_customer_waits_in_kueue_until_the_namespace_is_mapped() -> None:
    # Mapping the namespace cures DENY_UNKNOWN_CUSTOMER: Rejected would deactivate the Workload and make the user
    # resubmit, where Retry lets Kueue requeue it until the mapping is on record.
    assert check_state(False, "DENY_UNKNOWN_CUSTOMER") == "Retry"
    assert check_state(False, "DENY_INVALID") == "Rejected"


@pytest.mark.asyncio
async def test_queued_workloads_wait_for_the_inquiry_instead_of_being_rejected(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, store: str,
) -> None:
    kmock.objects[AC, None, "red-flag-28"] = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "AdmissionCheck",
                                             "metadata": {"name": "red-flag-28", "generation": 1},
                                             "spec": {"controllerName": CONTROLLER_NAME}}
    kmock.objects[AC, None, "provisioning"] = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "AdmissionCheck",
                                              "metadata": {"name": "provisioning"},
                                              "spec": {"controllerName": "kueue.x-k8s.io/provisioning-request"}}
    workload(kmock, "tenant-ae", "small", 2, "24")
    workload(kmock, "tenant-ae", "big", 512, "8000")
    workload(kmock, "tenant-mo", "macau", 1, "1")
    ctl = AdmissionCheckController(api, store)
    done = await asyncio.to_thread(ctl.reconcile)
    assert {d["workload"]: d["state"] for d in done} == {
        "tenant-ae/small": "Ready", "tenant-ae/big": "Retry", "tenant-mo/macau": "Rejected"}
    ac = kmock.objects[AC, None, "red-flag-28"].raw
    assert [c["type"] for c in ac["status"]["conditions"]] == ["Active"]
    assert "status" not in kmock.objects[AC, None, "provisioning"].raw  # not ours
    assert state(kmock, "tenant-ae", "big") == {"red-flag-28": "Retry", "provisioning": "Pending"}
    # Kueue requeues the workload (check back to Pending); the case is answered meanwhile.
    big = next(d for d in done if d["workload"] == "tenant-ae/big")
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), big["case_id"], export_intent=False, by="compliance")
    raw = kmock.objects[WL, "tenant-ae", "big"].raw
    kmock.objects[WL, "tenant-ae", "big"] = {**raw, "status": {"conditions": [RESERVED], "admissionChecks": [
        {"name": "red-flag-28", "state": "Pending"}, {"name": "provisioning", "state": "Ready"}]}}
    again = await asyncio.to_thread(ctl.reconcile)
    assert [(d["workload"], d["state"], d["code"]) for d in again] == [
        ("tenant-ae/big", "Ready", "ALLOW_AFTER_INQUIRY")]
