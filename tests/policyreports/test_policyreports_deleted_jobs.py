"""PolicyReports leave out held jobs deleted from the cluster since, and keep any job the API cannot vouch for.

Written through the real Kubernetes client to kmock (a real HTTP server emulating the Kubernetes API); the sync
client runs in a worker thread because kmock serves from the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi

from agent.store.db import session_scope
from agent.store.tables.cases import AdmissionDecision, RedFlagCase
from controllers.policyreports import REPORT_NAME, HeldJob, PolicyReportError, PolicyReportWriter, held_jobs_from_store

WG = "wgpolicyk8s.io/v1alpha2/policyreports"
PYTORCH = ("kubeflow.org", "v1", "pytorchjobs")
T0 = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


def held(ns: str = "tenant-a", name: str = "llm-pretrain", **kw: Any) -> HeldJob:
    """A job admitted in warn mode (so its object was created), as the store reports it: no apiVersion."""
    base: dict[str, Any] = {
        "namespace": ns, "name": name, "kind": "PyTorchJob", "policy": "red-flag-28", "rule": "HOLD_FOR_INQUIRY",
        "message": "Held: record the red-flag inquiry", "decided_at": T0, "case_id": "7", "result": "warn",
        "operation": "CREATE",
    }
    base.update(kw)
    return HeldJob(**base)


@dataclass
class Discovery:
    """What ``GET /apis/`` (the client's APIGroupList path) answers: each group's versions, the first preferred."""

    groups: dict[str, list[str]] = field(
        default_factory=lambda: {"wgpolicyk8s.io": ["v1alpha2"], "kubeflow.org": ["v1"]})
    status: int = 200

    def answer(self) -> Any:
        if self.status != 200:
            return kmock.KubernetesError(status=self.status, reason="Service Unavailable")
        return {"apiVersion": "v1", "kind": "APIGroupList", "groups": [
            {"name": g, "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
             "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs]} for g, vs in self.groups.items()]}


@pytest.fixture()
def discovery() -> Discovery:
    return Discovery()


@pytest.fixture()
def api(kmock: kmock.KubernetesEmulator, discovery: Discovery) -> Iterator[CustomObjectsApi]:
    kmock.resources[WG] = kmock.ResourceInfo(kind="PolicyReport", namespaced=True)
    kmock.resources["/".join(PYTORCH)] = kmock.ResourceInfo(kind="PyTorchJob", namespaced=True)
    kmock["get /apis/"] << discovery.answer
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CustomObjectsApi(client)


def create(api: CustomObjectsApi, ns: str, name: str, resource: tuple[str, str, str] = PYTORCH,
           kind: str = "PyTorchJob") -> None:
    group, version, plural = resource
    api.create_namespaced_custom_object(group, version, ns, plural, {
        "apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": name, "namespace": ns}})


def stored(k: kmock.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    res = k.resource(WG)
    return {ns: obj.raw for (r, ns, _name), obj in k.objects.items() if r == res and not obj.deleted}


def names_in(report: dict[str, Any]) -> list[str]:
    return sorted(r["resources"][0]["name"] for r in report["results"])


def lists_of(k: kmock.KubernetesEmulator, resource: str) -> int:
    return len(k[kmock.action.LIST, kmock.resource(resource)])


async def sync(writer: PolicyReportWriter, jobs: list[Any]) -> dict[str, Any]:
    return (await asyncio.to_thread(writer.sync, jobs)).as_dict()


@pytest.mark.asyncio
async def test_a_deleted_job_leaves_the_report_and_a_namespace_left_with_none_loses_its_report(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    for ns, name in (("tenant-a", "kept"), ("tenant-a", "deleted"), ("tenant-b", "only")):
        await asyncio.to_thread(create, api, ns, name)
    # A refused UPDATE left its object as it was: it exists, so it is looked up like an admitted job.
    jobs = [held("tenant-a", "kept"), held("tenant-a", "deleted", result="fail", operation="UPDATE"),
            held("tenant-b", "only")]
    writer = PolicyReportWriter(api)
    first = await sync(writer, jobs)
    assert first["gone"] == [] and len(first["created"]) == 2
    assert names_in(stored(kmock)["tenant-a"]) == ["deleted", "kept"]

    for ns, name in (("tenant-a", "deleted"), ("tenant-b", "only")):
        await asyncio.to_thread(api.delete_namespaced_custom_object, *PYTORCH[:2], ns, PYTORCH[2], name)
    before = lists_of(kmock, "/".join(PYTORCH))
    second = await sync(writer, jobs)  # the cases are still open: the store still holds all three
    assert second["gone"] == ["tenant-a/PyTorchJob/deleted", "tenant-b/PyTorchJob/only"]
    assert second["updated"] == [f"wgpolicyk8s.io/policyreports:tenant-a/{REPORT_NAME}"]
    assert second["deleted"] == [f"wgpolicyk8s.io/policyreports:tenant-b/{REPORT_NAME}"]
    assert second["skipped"] == {}
    reports = stored(kmock)
    assert set(reports) == {"tenant-a"}
    assert names_in(reports["tenant-a"]) == ["kept"] and reports["tenant-a"]["summary"]["warn"] == 1
    assert lists_of(kmock, "/".join(PYTORCH)) - before == 2, "one list per namespace and kind, not one GET per job"


@pytest.mark.asyncio
async def test_an_existing_job_is_kept(kmock: kmock.KubernetesEmulator, api: CustomObjectsApi) -> None:
    await asyncio.to_thread(create, api, "tenant-a", "llm-pretrain")
    result = await sync(PolicyReportWriter(api), [held()])
    assert result["gone"] == [] and result["skipped"] == {}
    assert names_in(stored(kmock)["tenant-a"]) == ["llm-pretrain"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "why"), [
    (403, "forbidden: the agent's ClusterRole needs list on pytorchjobs in kubeflow.org"),
    (500, "HTTP 500"),
])
async def test_a_lookup_that_fails_keeps_the_result_and_says_why(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, status: int, why: str,
) -> None:
    # The job is not in the cluster, but the API did not say so: it stays.
    kmock[kmock.action.LIST, kmock.resource("/".join(PYTORCH))] << status << {"kind": "Status", "code": status}
    result = await sync(PolicyReportWriter(api), [held()])
    assert result["gone"] == []
    assert result["created"] == [f"wgpolicyk8s.io/policyreports:tenant-a/{REPORT_NAME}"]
    reason = result["skipped"]["kubeflow.org/pytorchjobs:tenant-a"]
    assert why in reason and "kept in the report" in reason
    assert names_in(stored(kmock)["tenant-a"]) == ["llm-pretrain"]


@pytest.mark.asyncio
async def test_a_failed_discovery_or_an_unserved_kind_keeps_the_result(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, discovery: Discovery,
) -> None:
    # ray.io is not served at all (a CRD missing, or not yet in discovery): no proof the job is gone.
    result = await sync(PolicyReportWriter(api), [held(kind="RayJob", name="d5-run")])
    assert result["gone"] == []
    assert "rayjobs.ray.io is not served" in result["skipped"]["ray.io/rayjobs:tenant-a"]
    assert names_in(stored(kmock)["tenant-a"]) == ["d5-run"]

    discovery.status = 503
    again = await sync(PolicyReportWriter(api), [held()])
    assert again["gone"] == []
    assert "API discovery (/apis) failed: HTTP 503" in again["skipped"]["kubeflow.org/pytorchjobs:tenant-a"]


@pytest.mark.asyncio
async def test_a_kind_served_at_another_version_than_the_groups_preferred_one_is_found(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, discovery: Discovery,
) -> None:
    # training-operator's kinds at kubeflow.org/v1 beside mpi-operator's MPIJob at v2beta1 only.
    mpi = ("kubeflow.org", "v2beta1", "mpijobs")
    kmock.resources["/".join(mpi)] = kmock.ResourceInfo(kind="MPIJob", namespaced=True)
    discovery.groups["kubeflow.org"] = ["v1", "v2beta1"]
    await asyncio.to_thread(create, api, "tenant-a", "mpi-run", mpi, "MPIJob")
    result = await sync(PolicyReportWriter(api), [held(kind="MPIJob", name="mpi-run"),
                                                   held(kind="MPIJob", name="mpi-gone")])
    assert result["gone"] == ["tenant-a/MPIJob/mpi-gone"] and result["skipped"] == {}
    assert names_in(stored(kmock)["tenant-a"]) == ["mpi-run"]


@pytest.mark.asyncio
async def test_a_refused_create_is_kept_without_a_lookup(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    # The webhook refused the CREATE: the object never existed, and the hold is what the report is for.
    result = await sync(PolicyReportWriter(api), [held(result="fail", operation="CREATE")])
    assert result["gone"] == [] and result["skipped"] == {}
    assert names_in(stored(kmock)["tenant-a"]) == ["llm-pretrain"]
    assert lists_of(kmock, "/".join(PYTORCH)) == 0


@pytest.mark.asyncio
async def test_jobs_named_as_the_store_names_them_are_looked_up_by_their_kind(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, discovery: Discovery,
) -> None:
    # "Job" is batch/v1, "Job.batch.volcano.sh" Volcano's (jobspec.ref_kind); a bare Pod is in the core API.
    kmock.resources["batch/v1/jobs"] = kmock.ResourceInfo(kind="Job", namespaced=True)
    kmock.resources["batch.volcano.sh/v1alpha1/jobs"] = kmock.ResourceInfo(kind="Job", namespaced=True)
    kmock.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
    discovery.groups.update({"batch": ["v1"], "batch.volcano.sh": ["v1alpha1"]})

    def objects() -> None:
        create(api, "tenant-a", "same-name", ("batch", "v1", "jobs"), "Job")
        CoreV1Api(api.api_client).create_namespaced_pod(
            "tenant-a", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod-here"}})

    await asyncio.to_thread(objects)
    jobs = [held(kind="Job", name="same-name"), held(kind="Job.batch.volcano.sh", name="same-name"),
            held(kind="Pod", name="pod-here"), held(kind="Pod", name="pod-gone")]
    result = await sync(PolicyReportWriter(api), jobs)
    assert result["gone"] == ["tenant-a/Job.batch.volcano.sh/same-name", "tenant-a/Pod/pod-gone"]
    assert result["skipped"] == {}
    kinds = sorted(r["resources"][0]["kind"] for r in stored(kmock)["tenant-a"]["results"])
    assert kinds == ["Job", "Pod"]


@pytest.mark.asyncio
async def test_the_store_records_which_decisions_left_an_object_and_the_sync_drops_the_deleted_ones(
    db_url: str, kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    with session_scope(db_url) as s:
        case = RedFlagCase(customer_name="Acme Cloud Ltd", model_key="acme/frontier-1", status="open")
        s.add(case)
        s.flush()
        for name, operation, allowed, mode in (("refused-create", "CREATE", False, "enforce"),
                                               ("refused-update", "UPDATE", False, "enforce"),
                                               ("warned", "CREATE", True, "warn")):
            s.add(AdmissionDecision(
                uid=f"uid-{name}", decided_at=T0, namespace="tenant-a", kind="PyTorchJob", name=name,
                operation=operation, job_ref=f"tenant-a/PyTorchJob/{name}", customer_name="Acme Cloud Ltd",
                model_key="acme/frontier-1", code="HOLD_FOR_INQUIRY", allowed=allowed, mode=mode, chips=4096.0,
                case_id=case.id, message="held"))
    with session_scope(db_url) as s:
        jobs = held_jobs_from_store(s)
    assert {j.name: j.operation for j in jobs} == {"refused-create": "CREATE", "refused-update": "UPDATE",
                                                   "warned": "CREATE"}
    # None of the three is in the cluster: only the refused CREATE never had an object to lose.
    result = await sync(PolicyReportWriter(api), jobs)
    assert result["gone"] == ["tenant-a/PyTorchJob/refused-update", "tenant-a/PyTorchJob/warned"]
    assert names_in(stored(kmock)["tenant-a"]) == ["refused-create"]
    with session_scope(db_url) as s:
        assert len(held_jobs_from_store(s)) == 3, "the store is the record: the cases and decisions are unchanged"


def test_an_unknown_operation_is_refused_naming_the_field() -> None:
    with pytest.raises(PolicyReportError, match="operation 'PATCH' must be one of CREATE, UPDATE"):
        held(operation="PATCH")
