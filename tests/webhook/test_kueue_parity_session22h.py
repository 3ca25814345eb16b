"""Session 22h QA: the Kueue AdmissionCheck decides a queued job as ``POST /validate`` decides the same job.

A Workload is judged each time Kueue waits for its checks: when first queued, and again after an eviction
(preemption, a node failure) requeues it with its checks reset to Pending. By then the job has run, and
metering has charged its pods under its job reference. The webhook sees that restart as an UPDATE lifting the
job's suspension, and counts the job's own metered usage once, at the larger of it and the new estimate; the
check must not count the same job twice (its usage so far plus its whole estimate again).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from agent import cases, ledger
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utcnow
from controllers.kueue import AdmissionCheckController
from policies import redflag

from .conftest import KueueApi, M, job, review

H100 = "NVIDIA-H100-80GB-HBM3"


class _Api(KueueApi):
    """The stand-in with the Workload's owner (the suspended Job) readable."""

    def __init__(self, workloads: list[dict[str, Any]], owner: dict[str, Any]) -> None:
        super().__init__(workloads)
        self.owner = owner

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> Any:
        return copy.deepcopy(self.owner)


def _workload(owner: dict[str, Any], pods: int) -> dict[str, Any]:
    md = owner["metadata"]
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": f"job-{md['name']}-1a2b3", "namespace": md["namespace"], "uid": "wl-1",
                         "resourceVersion": "7",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": md["name"],
                                              "uid": md["uid"], "controller": True}]},
            "spec": {"podSets": [{"name": "main", "count": pods, "template": owner["spec"]["template"]}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "True"}],
                       "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}


def test_a_requeued_workload_that_already_ran_is_decided_as_the_webhook_decides_its_restart(store: str) -> None:
    now = utcnow()
    created = now - timedelta(days=380)
    # 512 pods × 8 H100 × 4000 h ≈ 0.58e26: admitted on its own.
    obj = job("llm", pods=512, annotations={M + "model": "kq", M + "expected-hours": "4000"})
    obj["metadata"].update(uid="job-uid", creationTimestamp=created.strftime("%Y-%m-%dT%H:%M:%SZ"))
    obj["spec"]["suspend"] = True
    api = _Api([_workload(obj, 512)], obj)
    first = AdmissionCheckController(api, store).reconcile(now=now - timedelta(days=379))
    assert [d["code"] for d in first] == [redflag.ALLOW]
    # It ran 9,000 hours on its 4,096 chips (metered, ≈ 0.46e26), then was evicted and requeued.
    with session_scope(store) as s:
        ledger.add_metered_usage(s, customer="Emirates AI", model="kq", job="tenant-ae/Job/llm",
                                 accelerator_name=H100, chip_seconds=4096 * 3600 * 9000,
                                 start=created + timedelta(hours=1), end=created + timedelta(hours=9001),
                                 packs=registry())
    # The webhook's view of the same restart: an UPDATE lifting the suspension (a dry run: nothing recorded).
    running = copy.deepcopy(obj)
    running["spec"]["suspend"] = False
    body = review(running, operation="UPDATE", dry_run=True)
    body["request"]["oldObject"] = copy.deepcopy(obj)
    with session_scope(store) as s:
        webhook = cases.evaluate_review(s, registry(), body, now=now)
    assert webhook.code == redflag.ALLOW, webhook.message

    again = AdmissionCheckController(_Api([_workload(obj, 512)], obj), store).reconcile(now=now)
    assert [(d["state"], d["code"]) for d in again] == [("Ready", webhook.code)]
    with session_scope(store) as s:
        latest = cases.decisions(s, 1)[0]
    assert latest["job"] == "tenant-ae/Job/llm"
    assert latest["estimate"] == webhook.estimate
