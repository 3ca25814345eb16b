"""Session 23 (i2): pods reaching accelerators unrequested that are cluster infrastructure, or that reach none.

The GPU operator's DaemonSets, the DCGM exporter, device plugins, CNI and CSI drivers run privileged or with
``NVIDIA_VISIBLE_DEVICES=all`` in namespaces that map to no customer: refusing them as an unknown customer's
accelerator job would break the cluster itself. A privileged pod on a cluster with no accelerator reaches none.
What names a vendor whose node the inventory does not hold still cannot be sized and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.cases import Outcome, _inv_cache, _node_cache, evaluate_review
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from controllers.jobspec import Demand, read
from policies import redflag

from .conftest import M, review

Decide = Callable[..., Outcome]


def _pod_spec(container: dict[str, Any], volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.0",
                                            **container}]}
    if volumes:
        spec["volumes"] = volumes
    return spec


def _daemonset_pod(container: dict[str, Any], ns: str = "gpu-operator",
                   volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A pod the daemon-set controller creates (a DaemonSet is not a kind the webhook counts at)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nvidia-device-plugin-daemonset-x7k2p", "namespace": ns,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "dp",
                                              "uid": "u1", "controller": True}]},
            "spec": _pod_spec(container, volumes)}


def _job(container: dict[str, Any], ns: str = "tenant-ae", volumes: list[dict[str, Any]] | None = None,
         pods: int = 1, hours: str = "1") -> dict[str, Any]:
    spec = {"restartPolicy": "Never", **_pod_spec(container, volumes)}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "frontier", "namespace": ns,
                         "annotations": {M + "model": "frontier", M + "expected-hours": hours}},
            "spec": {"parallelism": pods, "template": {"spec": spec}}}


ALL = {"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}
PRIVILEGED = {"securityContext": {"privileged": True}}


@pytest.fixture()
def decide(store: str) -> Decide:
    def run(body: dict[str, Any]) -> Outcome:
        with session_scope(store) as s:
            return evaluate_review(s, registry(), body, cluster="c1")
    return run


def _clear_caches() -> None:
    _inv_cache.clear()
    _node_cache.clear()


@pytest.fixture()
def hgx_cluster(store: str) -> str:
    """Cluster c1: HGX H100 nodes of 8 GPUs."""
    _clear_caches()
    with session_scope(store) as s:
        site = Site(name="dc1", country="US", cluster="c1")
        s.add(site)
        s.flush()
        s.add(Holding(source="k8s", external_id="c1/h0", site_id=site.id, accelerator="h100-sxm",  # type: ignore[arg-type]
                      count=8))
    return store


@pytest.fixture()
def cpu_cluster(store: str, overlay_mode: Callable[..., None]) -> str:
    """Cluster c1 with no accelerator in its inventory, declared CPU-only by the operator
    (admission-settings.cpu_only_clusters: an empty inventory alone is not taken to mean it, session 23 i4)."""
    _clear_caches()
    overlay_mode("enforce", cpu_only_clusters=["c1"])
    return store


DAEMON_SET_CONTROLLER = "system:serviceaccount:kube-system:daemon-set-controller"


def _from_controller(body: dict[str, Any]) -> dict[str, Any]:
    """The review as the DaemonSet controller sends it: only its pods of a DaemonSet are taken as infrastructure."""
    body["request"]["userInfo"] = {"username": DAEMON_SET_CONTROLLER}
    return body


def _warned(out: Outcome, text: str) -> bool:
    return out.decision is not None and any(text in w for w in out.decision.warnings)


# --- 1. infrastructure in namespaces that map to no customer ---------------------------------------------------------

@pytest.mark.parametrize("container", [ALL, PRIVILEGED], ids=["visible-devices-all", "privileged"])
def test_gpu_operator_daemonset_pod_in_an_unmapped_namespace_is_admitted_with_a_warning(
        hgx_cluster: str, decide: Decide, container: dict[str, Any]) -> None:
    out = decide(_from_controller(review(_daemonset_pod(container, ns="nvidia-device-plugin"))))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    field = "env[0] NVIDIA_VISIBLE_DEVICES=all" if container is ALL else "securityContext.privileged"
    assert _warned(out, f"spec.containers[0].{field}"), out.decision and out.decision.warnings
    assert _warned(out, "maps to no customer"), out.decision and out.decision.warnings


def test_dcgm_exporter_mounting_dev_in_an_unmapped_namespace_on_an_uninventoried_cluster_is_admitted(
        cpu_cluster: str, decide: Decide) -> None:
    # Vendor-specific access with no NVIDIA node inventoried is refused for a customer; an unmapped namespace's
    # infrastructure pod is admitted before any sizing.
    dev = [{"name": "d", "hostPath": {"path": "/dev/nvidia0"}}]
    out = decide(_from_controller(review(_daemonset_pod(ALL, ns="monitoring", volumes=dev))))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert _warned(out, "spec.containers[0].env[0] NVIDIA_VISIBLE_DEVICES=all")


def test_customer_namespace_pod_reaching_gpus_without_requesting_them_is_still_counted(
        hgx_cluster: str, decide: Decide) -> None:
    out = decide(review(_job(PRIVILEGED, pods=512, hours="8000")))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message


def test_unmapped_namespace_pod_that_requests_gpus_is_still_refused_as_an_unknown_customer(
        hgx_cluster: str, decide: Decide) -> None:
    pod = _daemonset_pod({**PRIVILEGED, "resources": {"limits": {"nvidia.com/gpu": 1}}})
    out = decide(_from_controller(review(pod)))
    assert not out.allowed and out.code == redflag.DENY_UNKNOWN_CUSTOMER, out.message
    plain = _daemonset_pod({"resources": {"limits": {"nvidia.com/gpu": 8}}})
    assert decide(review(plain)).code == redflag.DENY_UNKNOWN_CUSTOMER


def test_unmapped_namespace_job_with_one_role_requesting_gpus_is_refused_as_an_unknown_customer(
        hgx_cluster: str, decide: Decide) -> None:
    # A JobSet: a privileged launcher and workers requesting GPUs. Only the launcher's demand is unrequested access.
    def rj(name: str, container: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "replicas": 1, "template": {"spec": {"parallelism": 4, "template": {"spec": {
            "restartPolicy": "Never", **_pod_spec(container)}}}}}
    js = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
          "metadata": {"name": "js", "namespace": "gpu-operator"},
          "spec": {"replicatedJobs": [rj("launcher", PRIVILEGED), rj("workers", {"resources": {"limits": {
              "nvidia.com/gpu": 8}}})]}}
    out = decide(review(js))
    assert not out.allowed and out.code == redflag.DENY_UNKNOWN_CUSTOMER, out.message


def test_exempt_namespace_infrastructure_pod_stays_exempt(hgx_cluster: str, decide: Decide) -> None:
    out = decide(review(_daemonset_pod(PRIVILEGED, ns="kube-system")))
    assert out.allowed and out.code == redflag.EXEMPT, out.message


def test_the_reader_tells_unrequested_access_from_requested_accelerators() -> None:
    only = read(_daemonset_pod(PRIVILEGED))
    assert isinstance(only, Demand) and only.unrequested_only
    both = read(_daemonset_pod({**PRIVILEGED, "resources": {"limits": {"nvidia.com/gpu": 1}}}))
    assert isinstance(both, Demand) and not both.unrequested_only
    plain = read(_daemonset_pod({"resources": {"limits": {"nvidia.com/gpu": 1}}}))
    assert isinstance(plain, Demand) and not plain.unrequested_only
    cpu = read(_daemonset_pod({}))
    assert isinstance(cpu, Demand) and not cpu.unrequested_only  # asks for nothing at all


# --- 2. sizing when the inventory has nothing to reach ---------------------------------------------------------------

@pytest.mark.parametrize(("container", "volumes", "field"), [
    (PRIVILEGED, None, "spec.template.spec.containers[0].securityContext.privileged"),
    ({}, [{"name": "dev", "hostPath": {"path": "/dev"}}], "spec.template.spec.volumes[0].hostPath.path /dev"),
    ({}, [{"name": "root", "hostPath": {"path": "/"}}], "spec.template.spec.volumes[0].hostPath.path /"),
    ({}, [{"name": "v", "hostPath": {"path": "/dev/vfio"}}], "hostPath.path /dev/vfio"),
    ({}, [{"name": "d", "hostPath": {"path": "/dev/dri"}}], "hostPath.path /dev/dri"),
    ({}, [{"name": "a", "hostPath": {"path": "/dev/accel0"}}], "hostPath.path /dev/accel0"),
], ids=["privileged", "dev", "root", "vfio", "dri", "accel"])
def test_privileged_cpu_pod_on_a_cpu_cluster_reaches_no_accelerator_and_runs(
        cpu_cluster: str, decide: Decide, container: dict[str, Any], volumes: list[dict[str, Any]] | None,
        field: str) -> None:
    out = decide(review(_job(container, volumes=volumes, pods=64, hours="10000")))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert out.decision is not None and out.decision.chips == 0
    assert _warned(out, field) and _warned(out, "holds no accelerator"), out.decision.warnings


@pytest.mark.parametrize(("container", "volumes", "field", "remedy"), [
    (ALL, None, "NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_VISIBLE_DEVICES=void"),
    ({}, [{"name": "d", "hostPath": {"path": "/dev/nvidia0"}}], "hostPath.path /dev/nvidia0", "nvidia.com/gpu"),
    ({}, [{"name": "d", "hostPath": {"path": "/dev/kfd"}}], "hostPath.path /dev/kfd", "exempt the namespace"),
    ({}, [{"name": "d", "hostPath": {"path": "/dev/neuron0"}}], "hostPath.path /dev/neuron0", "veuctl inventory sync"),
], ids=["visible-devices", "dev-nvidia", "dev-kfd", "dev-neuron"])
def test_vendor_specific_access_on_a_cluster_without_that_vendor_is_refused_with_the_remedy(
        cpu_cluster: str, decide: Decide, container: dict[str, Any], volumes: list[dict[str, Any]] | None,
        field: str, remedy: str) -> None:
    out = decide(review(_job(container, volumes=volumes)))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message
    assert field in out.message and remedy in out.message


def test_cdi_injected_nvidia_gpus_on_a_cpu_cluster_are_refused(cpu_cluster: str, decide: Decide) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "tenant-ae", "annotations": {"cdi.k8s.io/x": "nvidia.com/gpu=all"}},
           "spec": _pod_spec({})}
    out = decide(review(pod))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message
    assert "metadata.annotations[cdi.k8s.io/x]" in out.message


def test_privileged_pod_on_a_gpu_cluster_is_still_counted_as_a_whole_node(hgx_cluster: str, decide: Decide) -> None:
    out = decide(review(_job(PRIVILEGED)))
    assert out.decision is not None and out.decision.chips == pytest.approx(8), out.message


def test_privileged_pod_requesting_two_vendors_on_a_cpu_cluster_is_not_counted_as_zero(
        cpu_cluster: str, decide: Decide) -> None:
    # It asks for chips itself: what it requests is counted (or refused), never dropped to 0.
    out = decide(review(_job({**PRIVILEGED, "resources": {"limits": {"nvidia.com/gpu": 2, "amd.com/gpu": 2}}})))
    assert out.decision is not None and (out.decision.chips >= 4 or out.code == redflag.DENY_INVALID), out.message


def test_privileged_pod_that_also_names_nvidia_gpus_on_a_cpu_cluster_is_refused(
        cpu_cluster: str, decide: Decide) -> None:
    # NVIDIA_VISIBLE_DEVICES names NVIDIA devices: the cluster has GPUs its inventory does not hold.
    out = decide(review(_job({**PRIVILEGED, **ALL})))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message


def test_privileged_pod_selecting_a_gpu_model_on_an_uninventoried_cluster_is_refused(
        cpu_cluster: str, decide: Decide) -> None:
    # A node selector naming a GPU model says such nodes exist: the inventory is behind, not empty of them.
    job = _job(PRIVILEGED)
    job["spec"]["template"]["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    out = decide(review(job))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message


def test_on_postgresql_infrastructure_is_admitted_and_a_privileged_cpu_pod_counts_zero(
        pg_store: str, overlay_mode: Callable[..., None]) -> None:
    _clear_caches()
    overlay_mode("enforce", cpu_only_clusters=["c1"])  # c1 declared CPU-only (session 23 i4)

    def decide(body: dict[str, Any]) -> Outcome:
        with session_scope(pg_store) as s:
            return evaluate_review(s, registry(), body, cluster="c1")
    infra = decide(_from_controller(review(_daemonset_pod(PRIVILEGED, ns="dcgm"))))
    assert infra.allowed and infra.code == redflag.ALLOW and _warned(infra, "maps to no customer"), infra.message
    cpu = decide(review(_job(PRIVILEGED)))
    assert cpu.allowed and cpu.decision is not None and cpu.decision.chips == 0, cpu.message
    gpu = decide(review(_job(ALL)))
    assert gpu.code == redflag.DENY_INVALID, gpu.message
