"""Session 24 (A): an ephemeral container that reaches its node's GPUs is reviewed and counted as the whole node.

``kubectl debug --profile=sysadmin`` adds a privileged ephemeral container to a running pod through the
``pods/ephemeralcontainers`` subresource: an UPDATE whose object is the whole Pod (kind Pod since Kubernetes 1.22,
KEP-277) with the new container in ``spec.ephemeralContainers``. Ephemeral containers cannot request resources, so
their only access is the unrequested kind: privileged, NVIDIA_VISIBLE_DEVICES naming devices, or a mount of a
hostPath device volume the pod already has. An UPDATE that reaches nothing new (the pod was already counted as its
whole node, or the debug container is unprivileged) is not decided again. An UPDATE of any object that newly reaches
the whole node (a Deployment whose 1-GPU pods become privileged) adds demand even though the floor count is equal.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import pytest
from sqlmodel import select

from agent.cases import Outcome, _inv_cache, _node_cache, evaluate_review
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.cases import AdmissionDecision as DecisionRow
from agent.store.tables.core import Holding, Site
from controllers.jobspec import Demand, adds_demand, is_passthrough, passthrough_product, read
from policies import redflag

from .conftest import M

SYSADMIN_DEBUG = {"name": "debugger-7x2k", "image": "busybox:1.36", "stdin": True, "tty": True,
                  "targetContainerName": "c", "securityContext": {"privileged": True}}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    _inv_cache.clear()
    _node_cache.clear()
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


def _gpu_site(url: str, cluster: str = "c1") -> None:
    """Cluster ``cluster``'s site with one 8-GPU H100 node."""
    with session_scope(url) as s:
        site = Site(name=f"dc-{cluster}", country="US", cluster=cluster)
        s.add(site)
        s.flush()
        s.add(Holding(source="k8s", external_id=f"{cluster}/h0", site_id=site.id,  # type: ignore[arg-type]
                      accelerator="h100-sxm", count=8))


def _pod(ns: str = "tenant-ae", *, gpus: int = 0, container: dict[str, Any] | None = None,
         volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "train:1", **(container or {})}
    if gpus:
        c["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [c]}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "notebook-0", "namespace": ns, "uid": "7f3c",
                         "creationTimestamp": "2026-01-05T10:00:00Z",
                         "annotations": {M + "model": "nb", M + "expected-hours": "10"}},
            "spec": spec, "status": {"phase": "Running"}}


def _debugged(pod: dict[str, Any], ephemeral: dict[str, Any] | None = None) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    new["spec"]["ephemeralContainers"] = [*new["spec"].get("ephemeralContainers", []),
                                          ephemeral or SYSADMIN_DEBUG]
    return new


def _ephemeral_review(old: dict[str, Any], new: dict[str, Any], user: str = "alice@example.com") -> dict[str, Any]:
    """What the API server sends for `kubectl debug -it notebook-0 --profile=sysadmin --image=busybox`: an UPDATE of
    the pods/ephemeralcontainers subresource, kind Pod, with the whole pod before and after."""
    ns, name = new["metadata"]["namespace"], new["metadata"]["name"]
    pod_kind = {"group": "", "version": "v1", "kind": "Pod"}
    pods = {"group": "", "version": "v1", "resource": "pods"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": pod_kind, "resource": pods, "subResource": "ephemeralcontainers",
        "requestKind": pod_kind, "requestResource": pods, "requestSubResource": "ephemeralcontainers",
        "name": name, "namespace": ns, "operation": "UPDATE",
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": new, "oldObject": old, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions", "fieldManager": "kubectl-debug"}}}


def _decide(url: str, body: dict[str, Any]) -> Outcome:
    with session_scope(url) as s:
        return evaluate_review(s, registry(), body, cluster="c1")


def _recorded(url: str) -> int:
    with session_scope(url) as s:
        return len(s.exec(select(DecisionRow)).all())


def _demand(obj: dict[str, Any]) -> Demand:
    d = read(obj)
    assert isinstance(d, Demand), d
    return d


# --- the reader -----------------------------------------------------------------------------------------------------

def test_a_privileged_ephemeral_container_reaches_the_whole_node() -> None:
    (g,) = _demand(_debugged(_pod())).groups
    assert g.whole_node.startswith("spec.ephemeralContainers[0].securityContext.privileged true"), g.whole_node
    assert g.unrequested_only and g.chips == 1


def test_an_ephemeral_container_naming_gpus_in_nvidia_visible_devices_reaches_them() -> None:
    dbg = {"name": "dbg", "image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
           "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "0,1,2,3"}]}
    (g,) = _demand(_debugged(_pod(), dbg)).groups
    assert g.whole_node.startswith("spec.ephemeralContainers[0].env[0] NVIDIA_VISIBLE_DEVICES=0,1,2,3"), g.whole_node
    assert g.resource == "nvidia.com/gpu" and g.chips == 4 and g.access_vendors == ("nvidia",)


def test_an_unprivileged_debug_container_reaches_nothing() -> None:
    dbg = {"name": "dbg", "image": "busybox:1.36", "securityContext": {"allowPrivilegeEscalation": False}}
    assert _demand(_debugged(_pod(), dbg)).groups == ()


def test_an_ephemeral_container_mounting_the_pods_device_volume_is_counted_by_the_volume() -> None:
    # An ephemeral container cannot add volumes; the pod's hostPath device volume already makes it a whole node.
    vols = [{"name": "dev", "hostPath": {"path": "/dev/nvidia0"}}]
    dbg = {"name": "dbg", "image": "busybox:1.36", "volumeMounts": [{"name": "dev", "mountPath": "/dev/nvidia0"}]}
    (g,) = _demand(_debugged(_pod(volumes=vols), dbg)).groups
    assert g.whole_node.startswith("spec.volumes[0].hostPath.path /dev/nvidia0"), g.whole_node


def test_a_malformed_ephemeral_container_list_is_a_reasoned_error() -> None:
    bad = _pod()
    bad["spec"]["ephemeralContainers"] = {"name": "dbg"}
    err = read(bad)
    assert not isinstance(err, Demand) and "spec.ephemeralContainers: expected a list" in err.message


# --- what an UPDATE adds --------------------------------------------------------------------------------------------

def test_gaining_whole_node_access_is_new_demand_though_the_floor_is_the_requested_count() -> None:
    one_gpu = _pod(gpus=1)
    assert adds_demand(_demand(one_gpu), _demand(_debugged(one_gpu)))


def test_a_deployment_whose_gpu_pods_become_privileged_adds_demand() -> None:
    def deployment(privileged: bool) -> dict[str, Any]:
        c: dict[str, Any] = {"name": "srv", "image": "vllm:1", "resources": {"limits": {"nvidia.com/gpu": 1}}}
        if privileged:
            c["securityContext"] = {"privileged": True}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "srv", "namespace": "tenant-ae"},
                "spec": {"replicas": 4, "template": {"spec": {"containers": [c]}}}}
    assert adds_demand(_demand(deployment(False)), _demand(deployment(True)))
    # Dropping the privilege (whole node to one requested GPU) asks for nothing new.
    assert not adds_demand(_demand(deployment(True)), _demand(deployment(False)))


def test_a_second_way_to_a_node_already_counted_whole_adds_nothing() -> None:
    privileged = _pod(container={"securityContext": {"privileged": True}})
    assert not adds_demand(_demand(privileged), _demand(_debugged(privileged)))


# --- the admission path ---------------------------------------------------------------------------------------------

def test_kubectl_debug_sysadmin_on_a_cpu_pod_of_a_tier3_customer_is_refused(url: str) -> None:
    _gpu_site(url)
    pod = _pod("tenant-mo")
    out = _decide(url, _ephemeral_review(pod, _debugged(pod)))
    assert not out.allowed and out.code == redflag.DENY_TIER3, out.message
    assert out.decision is not None and out.decision.chips == pytest.approx(8)


def test_kubectl_debug_sysadmin_in_an_unmapped_namespace_is_refused_as_an_unknown_customer(url: str) -> None:
    _gpu_site(url)
    pod = _pod("team-x")
    out = _decide(url, _ephemeral_review(pod, _debugged(pod)))
    assert not out.allowed and out.code == redflag.DENY_UNKNOWN_CUSTOMER, out.message


def test_kubectl_debug_sysadmin_on_a_one_gpu_pod_is_decided_at_the_whole_node(url: str) -> None:
    _gpu_site(url)
    pod = _pod(gpus=1)
    before = _recorded(url)
    out = _decide(url, _ephemeral_review(pod, _debugged(pod)))
    assert out.allowed and out.decision is not None, out.message
    assert out.decision.chips == pytest.approx(8)
    assert _recorded(url) == before + 1


def test_an_unprivileged_debug_container_is_not_decided_again(url: str) -> None:
    _gpu_site(url)
    pod = _pod(gpus=1)
    before = _recorded(url)
    out = _decide(url, _ephemeral_review(pod, _debugged(pod, {"name": "dbg", "image": "busybox:1.36"})))
    assert out.allowed and out.decision is None, out.message
    assert "not decided again" in out.message
    assert _recorded(url) == before


def test_debugging_a_pod_already_counted_as_its_whole_node_records_nothing_twice(url: str) -> None:
    _gpu_site(url)
    pod = _pod(container={"securityContext": {"privileged": True}})
    before = _recorded(url)
    out = _decide(url, _ephemeral_review(pod, _debugged(pod)))
    assert out.allowed and out.decision is None and "not decided again" in out.message, out.message
    assert _recorded(url) == before


def test_other_pod_subresources_stay_ungated(url: str) -> None:
    pod = _pod("tenant-mo")
    body = _ephemeral_review(pod, _debugged(pod))
    body["request"]["subResource"] = "status"
    out = _decide(url, body)
    assert out.allowed and "is not gated" in out.message, out.message


def test_the_ephemeralcontainers_subresource_of_another_resource_is_not_read_as_a_pod(url: str) -> None:
    pod = _pod("tenant-mo")
    body = _ephemeral_review(pod, _debugged(pod))
    body["request"]["resource"] = {"group": "example.com", "version": "v1", "resource": "widgets"}
    out = _decide(url, body)
    assert out.allowed and "is not gated" in out.message, out.message


def test_a_dry_run_debug_is_answered_and_not_recorded(url: str) -> None:
    _gpu_site(url)
    pod = _pod("tenant-mo")
    body = _ephemeral_review(pod, _debugged(pod))
    body["request"]["dryRun"] = True
    before = _recorded(url)
    out = _decide(url, body)
    assert not out.allowed and out.code == redflag.DENY_TIER3 and out.dry_run, out.message
    assert _recorded(url) == before


def test_the_decision_is_filed_under_the_pod(url: str) -> None:
    _gpu_site(url)
    pod = _pod(gpus=1)
    _decide(url, _ephemeral_review(pod, _debugged(pod)))
    with session_scope(url) as s:
        rows = s.exec(select(DecisionRow)).all()
    assert rows and rows[-1].job_ref == "tenant-ae/Pod/notebook-0", [r.job_ref for r in rows]
    assert rows[-1].operation == "UPDATE"


# --- one PCI-name pattern ---------------------------------------------------------------------------------------------

# The two patterns the reader had before session 24, kept here to show the one that replaced them answers as they did.
_OLD_PASSTHROUGH = re.compile(r"^nvidia\.com/(?:(?:G[KMPVAHB]|TU|AD)\d{3}[A-Z]*|GRID|NVIDIA)_[A-Za-z0-9_.-]+$")
_OLD_PCI_NAME = re.compile(r"^nvidia\.com/((?:G[KMPVAHB]|TU|AD)\d{3}[A-Z]*)_([A-Za-z0-9_.-]+)$")
_NAMES = ["nvidia.com/GH100_H100_SXM5_80GB", "nvidia.com/GH100_H100L_94GB", "nvidia.com/TU104GL_Tesla_T4",
          "nvidia.com/GA100_A100_PCIE_40GB", "nvidia.com/AD102GL_L40S", "nvidia.com/GB100_B200", "nvidia.com/GK210GL_",
          "nvidia.com/GRID_T4-1Q", "nvidia.com/NVIDIA_A100-4C", "nvidia.com/GH100_NVSwitch", "nvidia.com/GV100",
          "nvidia.com/GX100_X", "nvidia.com/gh100_h100", "nvidia.com/GH10_H100", "nvidia.com/GRIDS_T4",
          "amd.com/GH100_H100", "nvidia.com/pgpu", "nvidia.com/gpu", "nvidia.com/GH100_H100 SXM", "nvidia.com/TU_1"]


@pytest.mark.parametrize("name", _NAMES)
def test_one_pci_name_pattern_answers_as_the_two_did(name: str) -> None:
    old_passthrough = bool(_OLD_PASSTHROUGH.match(name)) and "nvswitch" not in name.lower()
    assert is_passthrough(name) == (name == "nvidia.com/pgpu" or old_passthrough)
    m = _OLD_PCI_NAME.match(name)
    old_product = ("" if name == "nvidia.com/pgpu" else
                   m.group(2).replace("_", " ") if m is not None and old_passthrough else None)
    assert passthrough_product(name) == old_product
