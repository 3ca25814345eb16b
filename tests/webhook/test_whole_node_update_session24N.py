"""Session 24 (N): an UPDATE that makes another role reach whole nodes is new demand; a debugged Job pod's warning.

- Whole-node access is counted per pod downstream (each pod as its node, at least the devices its spec shows), so
  an UPDATE adds demand when, for some accelerator resource and chip-model hint, more pods reach whole nodes or the
  devices they show grow, whichever role they belong to. A LeaderWorkerSet whose leader was already privileged and
  whose workers become privileged had been "not decided again" (counted at 60 chips where a CREATE of the same spec
  counts 256), as had a PyTorchJob whose Master was privileged and whose Workers became so.
- Re-privileging a template already counted whole, a rollout or an image change asks for nothing new.
- A Job's pod debugged with ``kubectl debug`` (pods/ephemeralcontainers) is decided as a pod of its own, and the
  warning says who debugged it, not that they created it.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from agent.cases import Outcome, _inv_cache, _node_cache, evaluate_review
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from controllers.jobspec import Demand, PodGroup, adds_demand, read

from .conftest import M


def _container(privileged: bool, image: str = "vllm:1") -> dict[str, Any]:
    c: dict[str, Any] = {"name": "w", "image": image, "resources": {"limits": {"nvidia.com/gpu": 1}}}
    if privileged:
        c["securityContext"] = {"privileged": True}
    return c


def _lws(workers_privileged: bool, *, image: str = "vllm:1") -> dict[str, Any]:
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": "srv", "namespace": "tenant-ae", "uid": "u1",
                         "creationTimestamp": "2026-01-05T10:00:00Z",
                         "annotations": {M + "model": "nb", M + "expected-hours": "10"}},
            "spec": {"replicas": 4, "leaderWorkerTemplate": {"size": 8,
                     "leaderTemplate": {"spec": {"containers": [_container(True, image)]}},
                     "workerTemplate": {"spec": {"containers": [_container(workers_privileged, image)]}}}}}


def _pytorch(workers_privileged: bool) -> dict[str, Any]:
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "p", "namespace": "tenant-ae"},
            "spec": {"pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": {"containers": [_container(True)]}}},
                "Worker": {"replicas": 16, "template": {"spec": {"containers": [_container(workers_privileged)]}}}}}}


def _demand(obj: dict[str, Any]) -> Demand:
    d = read(obj)
    assert isinstance(d, Demand), d
    return d


def _groups(*groups: PodGroup) -> Demand:
    return Demand("v1", "Pod", "p", "tenant-ae", groups)


def _whole(role: str, pods: int, chips: float) -> PodGroup:
    return PodGroup(role, pods, "nvidia.com/gpu", chips, whole_node="privileged", requested=chips)


# --- adds_demand ------------------------------------------------------------------------------------------------------

def test_lws_workers_becoming_privileged_beside_a_privileged_leader_adds_demand() -> None:
    assert adds_demand(_demand(_lws(False)), _demand(_lws(True)))


def test_pytorchjob_workers_becoming_privileged_beside_a_privileged_master_adds_demand() -> None:
    assert adds_demand(_demand(_pytorch(False)), _demand(_pytorch(True)))


def test_dropping_the_workers_privilege_adds_nothing() -> None:
    assert not adds_demand(_demand(_lws(True)), _demand(_lws(False)))
    assert not adds_demand(_demand(_pytorch(True)), _demand(_pytorch(False)))


def test_a_rollout_or_image_change_of_a_whole_node_lws_adds_nothing() -> None:
    assert not adds_demand(_demand(_lws(True)), _demand(_lws(True, image="vllm:2")))
    assert not adds_demand(_demand(_lws(False)), _demand(_lws(False, image="vllm:2")))


def test_the_same_whole_node_pods_under_another_role_add_nothing() -> None:
    assert not adds_demand(_groups(_whole("leader", 4, 1)), _groups(_whole("worker", 4, 1)))


def test_more_pods_reaching_whole_nodes_add_demand_though_the_devices_they_show_are_fewer() -> None:
    # One pod showing 8 devices reaches one node; two pods showing one each reach two 8-GPU nodes (16 chips).
    assert adds_demand(_groups(_whole("a", 1, 8)), _groups(_whole("b", 2, 1)))


def test_whole_node_pods_regrouped_so_one_shows_more_devices_than_a_node_add_demand() -> None:
    # Two pods at 9 devices each (18 on 8-GPU nodes) become one at 17 and one at 1 (17 + 8 = 25 on 8-GPU nodes):
    # neither the pods nor the devices shown grew, but the count downstream does.
    assert adds_demand(_groups(_whole("a", 2, 9)), _groups(_whole("a", 1, 17), _whole("b", 1, 1)))
    assert not adds_demand(_groups(_whole("a", 1, 17), _whole("b", 1, 1)), _groups(_whole("a", 2, 9)))


# --- the admission path -----------------------------------------------------------------------------------------------

@pytest.fixture()
def gpu_store(store: str) -> str:
    _inv_cache.clear()
    _node_cache.clear()
    with session_scope(store) as s:
        site = Site(name="dc", country="US", cluster="c1")
        s.add(site)
        s.flush()
        s.add(Holding(source="k8s", external_id="c1/h0", site_id=site.id,  # type: ignore[arg-type]
                      accelerator="h100-sxm", count=8))
    return store


def _review(old: dict[str, Any] | None, new: dict[str, Any], op: str) -> dict[str, Any]:
    g = {"group": "leaderworkerset.x-k8s.io", "version": "v1"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {**g, "kind": "LeaderWorkerSet"},
        "resource": {**g, "resource": "leaderworkersets"}, "name": "srv", "namespace": "tenant-ae", "operation": op,
        "userInfo": {"username": "alice@example.com"}, "object": new, "oldObject": old, "dryRun": False}}


def _decide(url: str, body: dict[str, Any]) -> Outcome:
    with session_scope(url) as s:
        return evaluate_review(s, registry(), body, cluster="c1")


def test_an_lws_update_privileging_its_workers_is_decided_at_what_a_create_of_it_counts(gpu_store: str) -> None:
    created = _decide(gpu_store, _review(None, _lws(True), "CREATE"))
    assert created.decision is not None, created.message
    updated = _decide(gpu_store, _review(_lws(False), _lws(True), "UPDATE"))
    assert updated.decision is not None, updated.message
    assert updated.decision.chips == pytest.approx(created.decision.chips)
    assert updated.decision.chips == pytest.approx(256)


def _ephemeral_review(old: dict[str, Any], new: dict[str, Any], user: str) -> dict[str, Any]:
    pod_kind = {"group": "", "version": "v1", "kind": "Pod"}
    pods = {"group": "", "version": "v1", "resource": "pods"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": pod_kind, "resource": pods, "subResource": "ephemeralcontainers",
        "name": new["metadata"]["name"], "namespace": "tenant-ae", "operation": "UPDATE",
        "userInfo": {"username": user}, "object": new, "oldObject": old, "dryRun": False}}


def test_a_jobs_pod_debugged_by_a_user_is_said_to_be_debugged_by_them_not_created(gpu_store: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "train-abc", "namespace": "tenant-ae", "uid": "p1",
                        "creationTimestamp": "2026-01-05T10:00:00Z",
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "j1",
                                             "controller": True}]},
           "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    debugged = copy.deepcopy(pod)
    debugged["spec"]["ephemeralContainers"] = [{"name": "d", "image": "busybox",
                                                "securityContext": {"privileged": True}}]
    out = _decide(gpu_store, _ephemeral_review(pod, debugged, "alice"))
    assert out.decision is not None and out.decision.chips == pytest.approx(8), out.message
    about_owner = [w for w in out.warnings if "Job" in w and "alice" in w]
    assert about_owner, out.warnings
    assert "debugged by alice" in about_owner[0], about_owner
    assert "created by alice" not in about_owner[0], about_owner
    assert "decided as a job of its own" in about_owner[0], about_owner


def test_a_pod_created_with_a_claimed_owner_still_says_who_created_it(gpu_store: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "train-abc", "namespace": "tenant-ae", "uid": "p1",
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "j1",
                                             "controller": True}]},
           "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    body = _ephemeral_review(pod, pod, "alice")
    body["request"].update(operation="CREATE", oldObject=None, subResource=None)
    out = _decide(gpu_store, body)
    assert any("claims a controlling Job but was created by alice" in w for w in out.warnings), out.warnings
