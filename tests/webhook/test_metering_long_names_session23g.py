"""Session 23 (g): every running pod is metered on its own, however long its name.

Metering files a pod's usage under ``<job>#<pod>``, cut to the ledger's 300 characters. A Deployment's name may
have 253: its replicas' names then fell past the cut, every replica started in the same second on the same chip
was filed under one key, and each replaced the other's interval: N pods metered as one.
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


DEPLOY = "inference-" + "d" * 230  # a Deployment name may be a 253-character DNS subdomain
RS = f"{DEPLOY}-7d9f8c6b5d"


def _pod(suffix: str) -> dict[str, object]:
    # The ReplicaSet controller names its pods from generateName "<replicaset>-", which the API server cuts to 58
    # characters before adding 5 random ones: every replica shares the first 58.
    name = f"{RS[:58]}{suffix}"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"u-{suffix}",
                         "annotations": {M + "model": "m"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": RS,
                                              "uid": "u-rs", "controller": True}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
            "status": {"phase": "Running", "startTime": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}}


@pytest.mark.asyncio
async def test_replicas_of_a_deployment_with_a_long_name_started_together_are_each_metered(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    kmock.resources["apps/v1/replicasets"] = kmock.ResourceInfo(kind="ReplicaSet", namespaced=True)
    kmock.resources["apps/v1/deployments"] = kmock.ResourceInfo(kind="Deployment", namespaced=True)
    kmock.objects["apps/v1/deployments", "tenant-ae", DEPLOY] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": DEPLOY, "namespace": "tenant-ae",
                                                                   "uid": "u-deploy"}}
    kmock.objects["apps/v1/replicasets", "tenant-ae", RS] = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": RS, "namespace": "tenant-ae", "uid": "u-rs", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOY, "uid": "u-deploy", "controller": True}]}}
    kmock.objects["v1/nodes", None, "n1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}
    for suffix in ("x7k2p", "b9q4m", "z3r8t"):
        pod = _pod(suffix)
        kmock.objects["v1/pods", "tenant-ae", pod["metadata"]["name"]] = pod  # type: ignore[index]
    report = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert report.pods_metered == 3, report
    with session_scope(store) as s:
        rows = list(s.exec(select(MeteredUsage)))
    # 3 replicas × 8 H100 × 3,600 s, each its own interval, all under the Deployment the webhook decided (the
    # ledger matches the job reference before "#").
    assert sum(r.chip_seconds for r in rows) == pytest.approx(3 * 8 * 3600.0)
    assert len({r.job_ref for r in rows}) == 3
    # Whole: the ledger's column holds any job reference and pod name (880 characters, migration 0025).
    assert all(r.job_ref.startswith(f"tenant-ae/Deployment/{DEPLOY}#{RS[:58]}") for r in rows)
    assert {r.job_ref.split("#", 1)[0] for r in rows} == {f"tenant-ae/Deployment/{DEPLOY}"}


@pytest.mark.parametrize("ref_len", [283, 290, 298])
def test_a_long_pod_reference_keeps_its_job_prefix_whole(ref_len: int) -> None:
    """A 40-character namespace, /Job/ and a 253-character name make a 298-character job reference: its pods' usage
    must still start with ``<ref>#``, the prefix a declared run and a case are matched to."""
    from agent.ledger import POD_SEP
    from controllers.metering import pod_job_ref

    ref = "ns/Job/" + "j" * (ref_len - len("ns/Job/"))
    keys = {pod_job_ref(ref, f"{'p' * 60}-{i}") for i in range(3)}
    assert len(keys) == 3
    for k in keys:
        assert len(k) <= 300 + 64 and k.startswith(ref + POD_SEP) and "~" not in k, k


def test_a_reference_longer_than_the_ledger_keeps_ends_in_a_digest_and_keeps_each_pod_apart() -> None:
    from agent.store.tables.ledger import METERED_JOB_REF_MAX
    from controllers.metering import pod_job_ref

    ref = "ns/Job/" + "j" * 900  # longer than any Kubernetes name allows: the digest is the last resort
    keys = {pod_job_ref(ref, f"pod-{i}") for i in range(3)}
    assert len(keys) == 3 and all(len(k) <= METERED_JOB_REF_MAX and "~" in k for k in keys)
