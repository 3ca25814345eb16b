"""Metering counts each pod's chip-seconds once, into the lineage and job the webhook decided.

Pods that end between two polls are charged up to when they finished (not dropped, not charged until now);
a pod whose chip model becomes known later is re-charged, not charged twice; the model named on a Job (not
on its pods) is the lineage its pods' usage counts toward; and a pod's usage is filed under the job kind the
webhook decided (TrainJob, MPIJob, RayJob), so max(admitted estimate, metered) is charged, never both.
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

from agent import ledger
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.ledger import MeteredUsage
from controllers.metering import Meter, job_ref_of

from .conftest import M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"
JOBS = "batch/v1/jobs"
JOBSETS = "jobset.x-k8s.io/v1alpha2/jobsets"
TRAINJOBS = "trainer.kubeflow.org/v1alpha1/trainjobs"


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    kmock.resources[JOBS] = kmock.ResourceInfo(kind="Job", namespaced=True)
    kmock.resources[JOBSETS] = kmock.ResourceInfo(kind="JobSet", namespaced=True)
    kmock.resources[TRAINJOBS] = kmock.ResourceInfo(kind="TrainJob", namespaced=True)
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def node(km: kmock.KubernetesEmulator, name: str, product: str | None) -> None:
    labels = {"nvidia.com/gpu.product": product} if product else {}
    km.objects["v1/nodes", None, name] = {"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name, "labels": labels}}


def pod(km: kmock.KubernetesEmulator, name: str, *, gpus: int, started: datetime, ns: str = "tenant-ae",
        labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None, model: str | None = None,
        phase: str = "Running", finished: datetime | None = None, node_name: str = "gpu-node-1") -> None:
    status: dict[str, Any] = {"phase": phase, "startTime": _ts(started)}
    if finished is not None:
        status["containerStatuses"] = [{"name": "t", "state": {"terminated": {
            "exitCode": 0, "startedAt": _ts(started), "finishedAt": _ts(finished)}}}]
    md: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": dict(labels or {}),
                          "annotations": {M + "model": model} if model else {}}
    if owner:
        md["ownerReferences"] = [{**owner, "controller": True}]
    km.objects["v1/pods", ns, name] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": md,
        "spec": {"nodeName": node_name, "containers": [
            {"name": "t", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": status,
    }


def usage_rows(store: str, job_prefix: str) -> list[MeteredUsage]:
    with session_scope(store) as s:
        rows = list(s.exec(select(MeteredUsage).where(MeteredUsage.job_ref.startswith(job_prefix))).all())  # type: ignore[attr-defined]
        for r in rows:
            s.expunge(r)
    return rows


# ------------------------------------------------------------------------------------------------ when


@pytest.mark.asyncio
async def test_a_pod_that_finished_between_two_polls_is_charged_up_to_its_finish_time(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", H100)
    t0 = NOW - timedelta(hours=10)
    pod(kmock, "train-0", gpus=8, started=t0, labels={"batch.kubernetes.io/job-name": "train"}, model="llm-x")
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    # It finished 30 minutes after that poll; the next poll sees it Succeeded.
    pod(kmock, "train-0", gpus=8, started=t0, labels={"batch.kubernetes.io/job-name": "train"}, model="llm-x",
        phase="Succeeded", finished=NOW + timedelta(minutes=30))
    r = await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=60))
    assert r.pods_metered == 1
    rows = usage_rows(store, "tenant-ae/Job/train#")
    assert len(rows) == 1
    assert rows[0].chip_seconds == pytest.approx(8 * (10 * 3600 + 30 * 60))


@pytest.mark.asyncio
async def test_a_finished_pod_is_charged_until_it_finished_not_until_the_poll(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", H100)
    t0 = NOW - timedelta(hours=10)
    pod(kmock, "train-0", gpus=8, started=t0, labels={"batch.kubernetes.io/job-name": "train"}, model="llm-x",
        phase="Failed", finished=t0 + timedelta(hours=2))
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    await asyncio.to_thread(meter.tick, NOW + timedelta(hours=5))  # still listed: charged the same, not more
    rows = usage_rows(store, "tenant-ae/Job/train#")
    assert [r.chip_seconds for r in rows] == [pytest.approx(8 * 2 * 3600)]


@pytest.mark.asyncio
async def test_a_pod_whose_chip_model_becomes_known_later_is_recharged_not_charged_twice(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", None)  # GPU feature discovery has not labelled the node yet
    t0 = NOW - timedelta(hours=10)
    pod(kmock, "train-0", gpus=8, started=t0, labels={"batch.kubernetes.io/job-name": "train"}, model="llm-x")
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    first = usage_rows(store, "tenant-ae/Job/train#")
    assert len(first) == 1
    node(kmock, "gpu-node-1", H100)
    await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=1))
    rows = usage_rows(store, "tenant-ae/Job/train#")
    # One pod over one interval: one row, on the chip it is now known to run on.
    assert len(rows) == 1, [(r.accelerator, r.chip_seconds) for r in rows]
    assert rows[0].chip_seconds == pytest.approx(8 * (10 * 3600 + 60))
    with session_scope(store) as s:
        view = ledger.model_view(s, registry(), "llm-x", NOW.date())
    assert sum(r["operations"] for r in view["runs"]) == pytest.approx(rows[0].operations)


# ------------------------------------------------------------------------------------------------ whose


@pytest.mark.asyncio
async def test_the_model_named_on_the_job_is_the_lineage_its_pods_are_metered_into(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", H100)
    # As the webhook admitted it: the model is annotated on the Job, not on its pod template.
    kmock.objects[JOBS, "tenant-ae", "train"] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "train", "namespace": "tenant-ae", "uid": "job-uid",
                     "annotations": {M + "model": "llm-on-job"}},
        "spec": {"template": {"spec": {"containers": [{"name": "t"}]}}}}
    pod(kmock, "train-0", gpus=8, started=NOW - timedelta(hours=1), labels={"batch.kubernetes.io/job-name": "train"},
        owner={"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "job-uid"})
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    with session_scope(store) as s:
        view = ledger.model_view(s, registry(), "llm-on-job", NOW.date())
    assert [r["job"] for r in view["runs"]] == ["tenant-ae/Job/train#train-0"]


@pytest.mark.asyncio
async def test_trainjob_pods_are_metered_under_the_trainjob_the_webhook_decided(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", H100)
    kmock.objects[TRAINJOBS, "tenant-ae", "tj"] = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
        "metadata": {"name": "tj", "namespace": "tenant-ae", "uid": "tj-uid", "annotations": {M + "model": "llm-tj"}},
        "spec": {"runtimeRef": {"name": "torch-distributed"}}}
    kmock.objects[JOBSETS, "tenant-ae", "tj"] = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": "tj", "namespace": "tenant-ae", "uid": "js-uid", "ownerReferences": [
            {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "name": "tj", "uid": "tj-uid",
             "controller": True}]}, "spec": {}}
    kmock.objects[JOBS, "tenant-ae", "tj-node-0"] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "tj-node-0", "namespace": "tenant-ae", "uid": "j-uid", "ownerReferences": [
            {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": "tj", "uid": "js-uid",
             "controller": True}]}, "spec": {}}
    pod(kmock, "tj-node-0-0-abcde", gpus=8, started=NOW - timedelta(hours=1),
        labels={"jobset.sigs.k8s.io/jobset-name": "tj", "batch.kubernetes.io/job-name": "tj-node-0",
                "trainer.kubeflow.org/trainjob-name": "tj"},
        owner={"apiVersion": "batch/v1", "kind": "Job", "name": "tj-node-0", "uid": "j-uid"})
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    with session_scope(store) as s:
        view = ledger.model_view(s, registry(), "llm-tj", NOW.date())
    assert [r["job"] for r in view["runs"]] == ["tenant-ae/TrainJob/tj#tj-node-0-0-abcde"]


@pytest.mark.asyncio
async def test_leaderworkerset_worker_pods_are_metered_under_the_leaderworkerset(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    # A worker StatefulSet is owned by its leader Pod, not by the LeaderWorkerSet.
    kmock.resources["apps/v1/statefulsets"] = kmock.ResourceInfo(kind="StatefulSet", namespaced=True)
    node(kmock, "gpu-node-1", H100)
    kmock.objects["apps/v1/statefulsets", "tenant-ae", "lws-0"] = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "lws-0", "namespace": "tenant-ae", "uid": "sts-uid", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": "lws-0", "uid": "uid-lws-0", "controller": True}]},
        "spec": {}}
    pod(kmock, "lws-0-1", gpus=8, started=NOW - timedelta(hours=1), model="llm-lws",
        labels={"leaderworkerset.sigs.k8s.io/name": "lws"},
        owner={"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "lws-0", "uid": "sts-uid"})
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert [r.job_ref for r in usage_rows(store, "tenant-ae/")] == ["tenant-ae/LeaderWorkerSet/lws#lws-0-1"]


def test_job_reference_from_labels_names_the_kind_the_webhook_decided() -> None:
    # When the owners cannot be read, the labels the operators set still name the job the webhook decided.
    def ref(labels: dict[str, str]) -> str:
        return job_ref_of({"metadata": {"namespace": "n", "name": "p", "labels": labels}})

    assert ref({"jobset.sigs.k8s.io/jobset-name": "tj", "trainer.kubeflow.org/trainjob-name": "tj"}) == "n/TrainJob/tj"
    # mpi-operator (kubeflow.org/v2beta1) labels its pods operator-name=mpi-operator.
    assert ref({"training.kubeflow.org/job-name": "pi", "training.kubeflow.org/operator-name": "mpi-operator"}) \
        == "n/MPIJob/pi"
    assert ref({"training.kubeflow.org/job-name": "tf", "training.kubeflow.org/operator-name": "tfjob-controller"}) \
        == "n/TFJob/tf"
    # KubeRay labels what a RayJob creates with the RayJob's name.
    assert ref({"ray.io/cluster": "rj-raycluster-x2x9k", "ray.io/originated-from-crd": "RayJob",
                "ray.io/originated-from-cr-name": "rj"}) == "n/RayJob/rj"
    # A RayService's RayCluster is decided as itself (the webhook does not decide RayServices).
    assert ref({"ray.io/cluster": "svc-raycluster-abc", "ray.io/originated-from-crd": "RayService",
                "ray.io/originated-from-cr-name": "svc"}) == "n/RayCluster/svc-raycluster-abc"
    # A Volcano Job is its own kind of job, never one with a batch/v1 Job of the same name.
    assert ref({"volcano.sh/job-name": "vj"}) == "n/Job.batch.volcano.sh/vj"


@pytest.mark.asyncio
async def test_a_cronjobs_pods_are_metered_under_the_job_the_webhook_decided_not_the_cronjob(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", H100)
    kmock.resources["batch/v1/cronjobs"] = kmock.ResourceInfo(kind="CronJob", namespaced=True)
    kmock.objects["batch/v1/cronjobs", "tenant-ae", "nightly"] = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "tenant-ae", "uid": "cj-uid"}, "spec": {}}
    kmock.objects[JOBS, "tenant-ae", "nightly-29000"] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly-29000", "namespace": "tenant-ae", "uid": "j-uid", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "cj-uid", "controller": True}]},
        "spec": {}}
    pod(kmock, "nightly-29000-abcde", gpus=8, started=NOW - timedelta(hours=1),
        labels={"batch.kubernetes.io/job-name": "nightly-29000"},
        owner={"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-29000", "uid": "j-uid"})
    pod(kmock, "dcgm-probe", gpus=1, started=NOW - timedelta(hours=1), node_name="gpu-node-1",
        owner={"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "probe", "uid": "ds-uid"})
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert sorted(r.job_ref for r in usage_rows(store, "tenant-ae/")) == [
        "tenant-ae/Job/nightly-29000#nightly-29000-abcde", "tenant-ae/Pod/dcgm-probe#dcgm-probe"]
