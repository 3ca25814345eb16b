"""Session 23 (i4): access to a node's accelerators without requesting them is admitted uncounted only on knowledge.

- Cluster infrastructure in a namespace mapped to no customer is a DaemonSet's pod created by the DaemonSet
  controller (a trusted controller), or a workload in a namespace the operator lists as infrastructure
  (``admission-settings.infrastructure_namespaces``). Anything else there (a privileged training Job, a bare
  privileged pod whose author wrote a DaemonSet ownerReference) is an unknown customer's job: refused as one.
- A privileged pod reaches no accelerator only on a cluster the operator declares CPU-only
  (``admission-settings.cpu_only_clusters``), and only when it neither tolerates an accelerator taint nor selects
  an accelerator node. An empty inventory (a GPU pool scaled to zero, a ``--cluster`` naming no site) is not that
  knowledge: the pod is refused as unsized, with the remedy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import select

from agent.cases import Outcome, _inv_cache, _node_cache, evaluate_review
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from policies import redflag
from policies.errors import PolicyError

from .conftest import M, review

PRIVILEGED = {"securityContext": {"privileged": True}}
DAEMON_SET_CONTROLLER = "system:serviceaccount:kube-system:daemon-set-controller"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A seeded store (tenant-ae is a Tier 2 customer; team-x maps to no one) on SQLite and on PostgreSQL."""
    _inv_cache.clear()
    _node_cache.clear()
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


def _gpu_site(url: str, cluster: str = "c1", *, retired: bool = False) -> None:
    """Cluster ``cluster``'s site with one 8-GPU H100 node (``retired``: its GPU pool scaled to zero)."""
    with session_scope(url) as s:
        site = Site(name=f"dc-{cluster}", country="US", cluster=cluster)
        s.add(site)
        s.flush()
        s.add(Holding(source="k8s", external_id=f"{cluster}/h0", site_id=site.id,  # type: ignore[arg-type]
                      accelerator="h100-sxm", count=8,
                      retired_at=datetime(2026, 1, 5, tzinfo=UTC) if retired else None))


def _pod_spec(container: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"restartPolicy": "Never", "containers": [{"name": "c", "image": "train:1", **container}],
            **(extra or {})}


def _job(ns: str = "tenant-ae", *, pods: int = 512, hours: str = "8000",
         spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "frontier", "namespace": ns,
                         "annotations": {M + "model": "frontier", M + "expected-hours": hours}},
            "spec": {"parallelism": pods, "template": {"spec": spec or _pod_spec(PRIVILEGED)}}}


def _ds_pod(ns: str = "team-x") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "node-exporter-x7k2p", "namespace": ns,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ne",
                                              "uid": "u1", "controller": True}]},
            "spec": _pod_spec(PRIVILEGED)}


def _by(body: dict[str, Any], user: str) -> dict[str, Any]:
    body["request"]["userInfo"] = {"username": user}
    return body


def _decide(url: str, body: dict[str, Any], cluster: str = "c1") -> Outcome:
    with session_scope(url) as s:
        return evaluate_review(s, registry(), body, cluster=cluster)


def _warned(out: Outcome, text: str) -> bool:
    return out.decision is not None and any(text in w for w in out.decision.warnings)


# --- 1. infrastructure in a namespace mapped to no customer ---------------------------------------------------------

def test_privileged_training_job_in_an_unmapped_namespace_is_refused_as_an_unknown_customer(url: str) -> None:
    _gpu_site(url)
    out = _decide(url, review(_job("team-x")))
    assert not out.allowed and out.code == redflag.DENY_UNKNOWN_CUSTOMER, out.message
    # What it reaches is counted: 512 whole nodes of 8 GPUs.
    assert out.decision is not None and out.decision.chips == pytest.approx(512 * 8)


def test_a_daemonsets_privileged_pod_from_its_controller_in_an_unmapped_namespace_is_admitted_as_infrastructure(
        url: str) -> None:
    _gpu_site(url)
    out = _decide(url, _by(review(_ds_pod()), DAEMON_SET_CONTROLLER))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert "admitted as cluster infrastructure" in out.message
    assert _warned(out, "maps to no customer"), out.decision and out.decision.warnings


def test_a_bare_privileged_pod_from_a_user_in_an_unmapped_namespace_is_refused(url: str) -> None:
    _gpu_site(url)
    # Anyone can write a DaemonSet ownerReference: only the DaemonSet controller's pod is taken as infrastructure.
    faked = _decide(url, review(_ds_pod()))
    assert not faked.allowed and faked.code == redflag.DENY_UNKNOWN_CUSTOMER, faked.message
    bare = _ds_pod()
    del bare["metadata"]["ownerReferences"]
    out = _decide(url, review(bare))
    assert not out.allowed and out.code == redflag.DENY_UNKNOWN_CUSTOMER, out.message
    # Nor a DaemonSet's own object kind elsewhere: a privileged Job claiming a DaemonSet owner from its controller.
    job = _job("team-x")
    job["metadata"]["ownerReferences"] = _ds_pod()["metadata"]["ownerReferences"]
    claimed = _decide(url, _by(review(job), DAEMON_SET_CONTROLLER))
    assert not claimed.allowed and claimed.code == redflag.DENY_UNKNOWN_CUSTOMER, claimed.message


def test_a_listed_infrastructure_namespace_admits_unrequested_access(url: str) -> None:
    _gpu_site(url)
    listed = redflag.AdmissionSettings.from_packs(registry(), date.today()).infrastructure_namespaces
    assert "gpu-operator" in listed and "team-x" not in listed
    out = _decide(url, review(_job("gpu-operator", pods=1, hours="1")))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert _warned(out, "maps to no customer"), out.decision and out.decision.warnings


def test_an_operator_lists_its_own_infrastructure_namespace(url: str, overlay_mode: Callable[..., None]) -> None:
    _gpu_site(url)
    overlay_mode("enforce", infrastructure_namespaces=["team-x"])
    out = _decide(url, review(_job("team-x", pods=1, hours="1")))
    assert out.allowed and out.code == redflag.ALLOW, out.message


def test_unrequested_access_in_an_unmapped_namespace_follows_deny_unknown_customer(
        url: str, overlay_mode: Callable[..., None]) -> None:
    _gpu_site(url)
    overlay_mode("enforce", deny_unknown_customer=False)
    out = _decide(url, review(_job("team-x")))
    assert out.code != redflag.DENY_UNKNOWN_CUSTOMER and out.decision is not None
    assert out.decision.chips == pytest.approx(512 * 8), out.message


@pytest.mark.parametrize("bad", [["GPU_Operator"], "gpu-operator", [""], [3]])
def test_infrastructure_namespaces_must_be_namespace_names(overlay_mode: Callable[..., None], bad: Any) -> None:
    overlay_mode("enforce", infrastructure_namespaces=bad)
    with pytest.raises(PolicyError, match=r"admission-settings\.infrastructure_namespaces"):
        redflag.AdmissionSettings.from_packs(registry(), date.today())


def test_an_operator_pack_without_the_new_settings_admits_no_namespace_and_declares_no_cluster(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pack written before the settings existed (the Helm chart's) replaces the provision whole: neither list
    # widens what is admitted uncounted when left out.
    values = dict(registry().provision("admission-settings", date.today()).values)
    del values["infrastructure_namespaces"], values["cpu_only_clusters"]
    pack = {"id": "site-overrides", "version": "old", "title": "an older operator pack", "source": "test",
            "provisions": [{"id": "admission-settings", "title": "Admission webhook behaviour",
                            "citation": "operator override", "effective_from": "2020-01-01",
                            "status": [{"since": "2020-01-01", "codified": False, "enforced": True}],
                            "values": values}]}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(pack))
    monkeypatch.setenv("VEU_POLICY_DIRS", str(tmp_path))
    settings = redflag.AdmissionSettings.from_packs(registry(), date.today())
    assert settings.infrastructure_namespaces == () and settings.cpu_only_clusters == ()


# --- 2. "reaches no accelerator" only on a cluster declared CPU-only ------------------------------------------------

def test_privileged_job_on_a_gpu_pool_scaled_to_zero_is_not_counted_as_zero(url: str) -> None:
    _gpu_site(url, retired=True)
    out = _decide(url, review(_job()))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message
    assert "admission-settings.cpu_only_clusters" in out.message and "securityContext.privileged" in out.message


def test_a_cluster_name_matching_no_site_is_not_cpu_only(url: str) -> None:
    _gpu_site(url)  # c1 has GPUs; the webhook is configured as c9, which no site names
    out = _decide(url, review(_job()), cluster="c9")
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message
    assert "cpu_only_clusters" in out.message


def test_privileged_cpu_pod_on_a_declared_cpu_only_cluster_runs(url: str, overlay_mode: Callable[..., None]) -> None:
    overlay_mode("enforce", cpu_only_clusters=["c1"])
    out = _decide(url, review(_job(pods=64, hours="10000")))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert out.decision is not None and out.decision.chips == 0
    assert _warned(out, "cpu_only_clusters"), out.decision.warnings


@pytest.mark.parametrize("extra", [
    {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    {"tolerations": [{"key": "aws.amazon.com/neuron", "operator": "Exists"}]},
    {"tolerations": [{"key": "google.com/tpu", "operator": "Equal", "value": "present"}]},
    {"tolerations": [{"key": "habana.ai/gaudi", "operator": "Exists"}]},
    {"tolerations": [{"key": "amd.com/gpu", "operator": "Exists"}]},
    {"tolerations": [{"operator": "Exists"}]},  # tolerates every taint, an accelerator pool's among them
    {"nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge"}},
    {"nodeSelector": {"cloud.google.com/gke-nodepool": "a3-pool"}},
    {"nodeSelector": {"karpenter.k8s.aws/instance-gpu-count": "8"}},
    {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "Exists"}]}]}}}},
    {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {
        "matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                              "values": ["a3-highgpu-8g"]}]}}]}}},
], ids=["tolerates-nvidia", "tolerates-neuron", "tolerates-tpu", "tolerates-habana", "tolerates-amd",
        "tolerates-all", "instance-type", "gke-nodepool", "karpenter-gpu-count", "gke-accelerator-exists",
        "prefers-instance-type"])
def test_a_pod_aiming_at_accelerator_nodes_on_a_declared_cpu_only_cluster_is_refused(
        url: str, overlay_mode: Callable[..., None], extra: dict[str, Any]) -> None:
    overlay_mode("enforce", cpu_only_clusters=["c1"])
    out = _decide(url, review(_job(spec=_pod_spec(PRIVILEGED, extra))))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message


def test_a_cpu_tolerating_pod_on_a_declared_cpu_only_cluster_runs(url: str, overlay_mode: Callable[..., None]) -> None:
    overlay_mode("enforce", cpu_only_clusters=["c1"])
    extra = {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
             "nodeSelector": {"kubernetes.io/os": "linux"}}
    out = _decide(url, review(_job(spec=_pod_spec(PRIVILEGED, extra))))
    assert out.allowed and out.decision is not None and out.decision.chips == 0, out.message


def test_a_declared_cpu_only_cluster_whose_inventory_holds_gpus_is_counted_by_them(
        url: str, overlay_mode: Callable[..., None]) -> None:
    # The declaration is stale once the inventory holds an accelerator there: the node counts.
    _gpu_site(url)
    overlay_mode("enforce", cpu_only_clusters=["c1"])
    out = _decide(url, review(_job()))
    assert out.decision is not None and out.decision.chips == pytest.approx(512 * 8), out.message


def test_the_empty_name_declares_a_webhook_with_no_cluster_configured(
        url: str, overlay_mode: Callable[..., None]) -> None:
    overlay_mode("enforce", cpu_only_clusters=[""])
    out = _decide(url, review(_job(pods=4, hours="1")), cluster="")
    assert out.allowed and out.decision is not None and out.decision.chips == 0, out.message
    assert _decide(url, review(_job(pods=4, hours="1")), cluster="c1").code == redflag.DENY_INVALID


@pytest.mark.parametrize("bad", ["c1", [1], [None]])
def test_cpu_only_clusters_must_be_a_list_of_cluster_names(overlay_mode: Callable[..., None], bad: Any) -> None:
    overlay_mode("enforce", cpu_only_clusters=bad)
    with pytest.raises(PolicyError, match=r"admission-settings\.cpu_only_clusters"):
        redflag.AdmissionSettings.from_packs(registry(), date.today())


def test_the_inventory_query_sees_the_retired_pool_as_empty(url: str) -> None:
    # The premise of the scaled-to-zero test: retired holdings are not in the inventory.
    _gpu_site(url, retired=True)
    with session_scope(url) as s:
        assert s.exec(select(Holding)).first() is not None
        from agent.cases import inventory_nodes
        assert inventory_nodes(s, "c1") == {}
