"""What the chart deploys matches what the code it runs does: the kinds the webhook gates, the Kubernetes calls the
agent and controllers make, what the webhook answers when it cannot decide, and what the agent serves.

Each test reads the product's code (controllers/, agent/) rather than a copy of its facts, so a chart that drifts
from the code fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helm.chart import ALL_SETS, ci_values, of_kind, one, pod_specs, render, render_set

ROOT = Path(__file__).resolve().parents[2]


def _webhooks(objs: Any) -> list[dict[str, Any]]:
    return [w for vwc in of_kind(objs, "ValidatingWebhookConfiguration") for w in vwc["webhooks"]]


def _containers(objs: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{where}/{c['name']}", c) for where, pod in pod_specs(objs)
            for c in pod["containers"] + pod.get("initContainers", [])]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _webhook_container(objs: Any) -> dict[str, Any]:
    pod = one(objs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "webhook"]
    return c


# --- every kind the webhook gates reaches it ------------------------------------------------------

def _counted_owners() -> set[tuple[str, str]]:
    """(API group, kind) of the owners whose trusted-controller children the webhook admits as counted there."""
    from controllers import jobspec

    counted = getattr(jobspec, "COUNTED_OWNERS", None)
    if counted is not None:
        return set(counted)
    gated = jobspec.GATED_OWNER_KINDS  # the older name: kinds only
    return {(g, k) for g, k in jobspec.READERS if k in gated or k == "Pod"}


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_every_job_kind_whose_children_the_webhook_counts_at_the_owner_is_sent_to_it(value_set: str) -> None:
    """The webhook admits a trusted controller's children "counted at its owner" for these owners (and the
    matchConditions do not even send them): an owner kind missing from the rules is never decided, so e.g. a
    JAXJob's pods ran ungated."""
    sent = {(g, res) for w in _webhooks(render_set(value_set)) for r in w["rules"]
            for g in r["apiGroups"] for res in r["resources"]}
    counted = _counted_owners()
    assert ("kubeflow.org", "JAXJob") in counted  # the reader set this test relies on
    missing = sorted(f"{g or 'core'}/{k}" for g, k in counted if (g, k.lower() + "s") not in sent)
    assert missing == [], f"counted-at-owner kinds the webhook never sees: {missing}"
    # and the scale subresource of every kind whose scale-ups the webhook gates (`kubectl scale`, an HPA must not
    # grow a job past what was counted)
    from controllers import jobspec

    scaled = getattr(jobspec, "KIND_OF_RESOURCE", None)
    if scaled is None:
        scaled = {(g, k.lower() + "s"): k for g, k in counted if g not in ("", "batch", "apps")}
    assert {(g, f"{res}/scale") for g, res in scaled} <= sent


def _conditions_pass(webhook: dict[str, Any], obj: dict[str, Any], user: str) -> bool:
    import celpy

    env = celpy.Environment()
    act = {"object": celpy.json_to_cel(obj), "oldObject": celpy.json_to_cel(None),
           "request": celpy.json_to_cel({"operation": "CREATE", "userInfo": {"username": user}})}
    return all(bool(env.program(env.compile(c["expression"])).evaluate(act)) for c in webhook["matchConditions"])


def test_a_trusted_controllers_child_is_skipped_only_when_its_owner_is_counted() -> None:
    """The webhook decides a trusted controller's child of any other owner (a StatefulSet's pods, a RayService's
    RayCluster) as a job of its own: the chart must send it, or such a run is counted nowhere."""
    from controllers.jobspec import READERS

    objs = render_set("default")
    (pods,) = [w for w in _webhooks(objs) if w["name"] == "pods.veu-governor.io"]
    counted = _counted_owners()
    trusted = "system:serviceaccount:kube-system:statefulset-controller"
    owners = {*READERS, ("ray.io", "RayService"), ("example.com", "MyJob")}
    wrong = []
    for group, kind in sorted(owners):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "t", "ownerReferences": [
            {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind, "name": "o", "uid": "u",
             "controller": True}]},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}
        if _conditions_pass(pods, pod, trusted) == ((group, kind) in counted):
            wrong.append((group, kind))
    assert wrong == [], f"sent although counted at the owner, or skipped although counted nowhere: {wrong}"


# --- what the webhook answers when it cannot decide -----------------------------------------------

def _gpu_pod_review() -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "operation": "CREATE", "namespace": "team-a",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "userInfo": {"username": "alice"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a"},
                   "spec": {"containers": [{"name": "c", "image": "i",
                                            "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}}}


@pytest.mark.parametrize(("value_set", "values", "allowed"), [
    ("default", None, False),
    ("audit-values", None, True),
    ("ignore", {"webhook": {"failurePolicy": "Ignore"}}, True),
    ("sqlite-trial-values", None, False),
])
def test_the_webhook_answers_a_store_outage_as_its_failure_policy_says(
        value_set: str, values: dict[str, Any] | None, allowed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store outage is answered by the webhook itself with a well-formed AdmissionReview, so the API server's
    failurePolicy never applies: with failurePolicy Ignore (and admission.mode=audit, which requires it) the webhook
    must admit, or a database outage blocks every accelerator job of a release that was meant to fail open."""
    from fastapi.testclient import TestClient

    from agent.api.app import create_webhook_app

    objs = render(values) if values is not None else render_set(value_set)
    env = _env(_webhook_container(objs))
    assert "VEU_WEBHOOK_FAILURE_MODE" in env
    monkeypatch.setenv("VEU_WEBHOOK_FAILURE_MODE", env["VEU_WEBHOOK_FAILURE_MODE"])
    policies = {w["failurePolicy"] for w in _webhooks(objs) if not w["name"].split(".")[0].endswith("-fail-open")}
    assert policies == {"Ignore" if allowed else "Fail"}
    unreachable = "postgresql+psycopg://veu@127.0.0.1:9/veu?connect_timeout=2"
    with TestClient(create_webhook_app(unreachable)) as client:
        resp = client.post("/validate", json=_gpu_pod_review())
    assert resp.status_code == 200
    answer = resp.json()["response"]
    assert answer["uid"] == "u-1" and answer["allowed"] is allowed, answer


# --- the agent serves nothing -----------------------------------------------------------------------

def test_the_agent_gets_no_http_probe_or_port_since_veuctl_agent_run_serves_none() -> None:
    """`veuctl agent run` (agent/scheduler.py) opens no listening socket: a probe on agent.healthPort could only
    fail and restart the leader forever. The value is ignored (an earlier release's values file still installs)."""
    scheduler = (ROOT / "agent" / "scheduler.py").read_text(encoding="utf-8")
    assert not re.search(r"HTTPServer|start_http_server|uvicorn|socket\.bind", scheduler)
    for objs in [render({"agent": {"healthPort": 8080}})] + [render_set(v) for v in ALL_SETS]:
        for where, c in _containers(objs):
            if c.get("args", [])[:2] == ["agent", "run"]:
                assert not c.get("ports") and not any(p in c for p in ("readinessProbe", "livenessProbe")), where


# --- RBAC: what the code calls, and nothing more --------------------------------------------------

# Every Kubernetes client method the agent and controllers call (found by the scan below), with the rights it needs:
# (apiGroup, resource, verb) per plural it is called with.  Custom-object calls name their plurals here.
CALLS: dict[str, set[tuple[str, str, str]]] = {
    # agent/collectors/k8s_nodes.py (collector, NodeWatcher list+watch), controllers/metering.py
    "list_node": {("", "nodes", "list"), ("", "nodes", "watch")},
    # controllers/metering.py: running pods, all namespaces
    "list_pod_for_all_namespaces": {("", "pods", "list")},
    # controllers/namespaces.py: NamespaceWatcher list+watch
    "list_namespace": {("", "namespaces", "list"), ("", "namespaces", "watch")},
    # controllers/metering.py: EventsV1Api
    "create_namespaced_event": {("events.k8s.io", "events", "create")},
    # controllers/leader.py: the Lease (a namespaced Role, checked separately)
    "read_namespaced_lease": set(), "create_namespaced_lease": set(), "patch_namespaced_lease": set(),
    # controllers/policyreports.py and controllers/kueue.py
    "list_cluster_custom_object": {("wgpolicyk8s.io", "policyreports", "list"), ("openreports.io", "reports", "list"),
                                   ("kueue.x-k8s.io", "admissionchecks", "list"),
                                   ("kueue.x-k8s.io", "workloads", "list")},
    "create_namespaced_custom_object": {("wgpolicyk8s.io", "policyreports", "create"),
                                        ("openreports.io", "reports", "create")},
    "patch_namespaced_custom_object": {("wgpolicyk8s.io", "policyreports", "patch"),
                                       ("openreports.io", "reports", "patch")},
    "delete_namespaced_custom_object": {("wgpolicyk8s.io", "policyreports", "delete"),
                                        ("openreports.io", "reports", "delete")},
    "patch_cluster_custom_object_status": {("kueue.x-k8s.io", "admissionchecks/status", "patch")},
    "patch_namespaced_custom_object_status": {("kueue.x-k8s.io", "workloads/status", "patch")},
    # controllers/metering.py: a pod's controlling owners, one by one, up to the workload the webhook decided
    # (the kinds in controllers/jobspec.py READERS; core kinds are not read)
    "get_namespaced_custom_object": {("owner-kinds", "*", "get")},
    # controllers/policyreports.py: whether held jobs still exist, one list per namespace and kind (READERS)
    "list_namespaced_custom_object": {("job-kinds", "*", "list")},
    "list_namespaced_pod": {("", "pods", "list")},
}


def _owner_kind_rights(verb: str = "get") -> set[tuple[str, str, str]]:
    from controllers.jobspec import READERS

    return {(g, k.lower() + "s", verb) for g, k in READERS if g}


def _client_methods_called() -> set[str]:
    from kubernetes import client

    apis = [client.CoreV1Api, client.EventsV1Api, client.CoordinationV1Api, client.CustomObjectsApi,
            client.BatchV1Api, client.AppsV1Api]
    names: set[str] = set()
    for folder in ("agent", "controllers"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for name in re.findall(r"\b((?:list|read|create|patch|replace|delete|watch)_[a-z_]+)\b", text):
                if any(hasattr(api, name) for api in apis):
                    names.add(name)
    return names


def test_the_rbac_table_names_every_kubernetes_call_the_code_makes() -> None:
    """A new client call in agent/ or controllers/ fails here until CALLS (and so the chart's RBAC) covers it."""
    called = _client_methods_called()
    assert "list_pod_for_all_namespaces" in called and "patch_namespaced_custom_object_status" in called
    assert called <= set(CALLS), sorted(called - set(CALLS))


def _needed(values: dict[str, Any]) -> set[tuple[str, str, str]]:
    agent = values.get("agent", {})
    reports = {"enabled": True, "openreports": False, **values.get("policyReports", {})}
    out: set[tuple[str, str, str]] = set()
    if values.get("controllers", {}).get("enabled", True):
        out |= _owner_kind_rights()
    if reports["enabled"]:
        out |= _owner_kind_rights("list")
    for rights in CALLS.values():
        for g, r, v in rights:
            if g in ("owner-kinds", "job-kinds"):
                continue
            if g in ("wgpolicyk8s.io",) and not reports["enabled"]:
                continue
            if g == "openreports.io" and not (reports["enabled"] and reports["openreports"]):
                continue
            if g == "kueue.x-k8s.io" and not agent.get("kueueAdmissionCheck", False):
                continue
            out.add((g, r, v))
    return out


def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


RBAC_CASES = {
    **{name: ci_values(name) for name in ALL_SETS},
    # The Kueue AdmissionCheck controller lists every Workload even when the webhook does not gate Workloads.
    "kueue-check-without-workload-webhook": {"agent": {"kueueAdmissionCheck": True},
                                             "webhook": {"kinds": {"kueueWorkloads": False}}},
    "no-policy-reports": {"policyReports": {"enabled": False}},
    "no-controllers": {"controllers": {"enabled": False}},
}


@pytest.mark.parametrize("case", sorted(RBAC_CASES))
def test_the_agent_role_grants_what_the_code_calls_and_no_other_resource(case: str) -> None:
    values = RBAC_CASES[case]
    objs = render_set(case) if case in ALL_SETS else render(values)
    granted = _granted(one(objs, "ClusterRole", "-agent"))
    needed = _needed(values)
    assert needed <= granted, f"calls that would be forbidden: {sorted(needed - granted)}"
    # Beyond what is called, only the other read verbs (get/watch) on resources that are listed anyway.
    read = {(g, r) for g, r, v in needed if v in ("list", "watch")}
    extra = {(g, r, v) for g, r, v in granted - needed if not ((g, r) in read and v in ("get", "list", "watch"))}
    assert extra == set(), f"rights no code uses: {sorted(extra)}"


def test_the_kueue_admission_check_needs_the_controllers_that_run_it() -> None:
    for values in ({"controllers": {"enabled": False}}, {"agent": {"enabled": False}}):
        merged = {**values, "agent": {"kueueAdmissionCheck": True, **values.get("agent", {})}}
        with pytest.raises(Exception, match=r"kueueAdmissionCheck.*controllers"):
            render(merged)
    objs = render({"agent": {"kueueAdmissionCheck": True}})
    (ctl,) = [c for _, c in _containers(objs) if c["name"] == "controllers"]
    assert "--kueue" in ctl["args"]


# --- audit checkpoints are signed only with a key that outlives the pod ---------------------------

@pytest.mark.parametrize("value_set", ALL_SETS)
def test_no_pod_signs_audit_checkpoints_with_a_throwaway_key(value_set: str) -> None:
    """Without VEU_SIGNING_KEY_FILE every pod signs a checkpoint each 1000 audit entries (agent/audit.py) with a key it
    generates under HOME=/tmp, an emptyDir: lost on restart, one per replica, and `veuctl audit verify` rejects every
    such checkpoint as signed by an untrusted key. So: a mounted key, or no periodic checkpoints."""
    values = ci_values(value_set)
    has_key = bool(values.get("signingKey", {}).get("existingSecret"))
    checked = 0
    for where, c in _containers(render_set(value_set)):
        env = _env(c)
        if "VEU_DATABASE_URL" not in {e["name"] for e in c.get("env", [])} or c["args"][:2] == ["db", "upgrade"]:
            continue  # `veuctl db upgrade` only migrates: it writes no audit entry
        checked += 1
        if has_key:
            key_file = env["VEU_SIGNING_KEY_FILE"]
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert str(Path(key_file).parent) in mounts, where
            assert env.get("VEU_AUDIT_CHECKPOINT_EVERY") != "0", where
        else:
            assert "VEU_SIGNING_KEY_FILE" not in env, where
            assert env.get("VEU_AUDIT_CHECKPOINT_EVERY") == "0", where
    assert checked


def test_checkpoint_every_zero_really_stops_periodic_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import audit

    signed: list[int] = []
    monkeypatch.setattr(audit, "sign_checkpoint", lambda _s, seq, _h, **_kw: signed.append(seq))
    entry = type("E", (), {"seq": 1000, "hash": "h"})()
    monkeypatch.setenv("VEU_AUDIT_CHECKPOINT_EVERY", "0")
    audit._maybe_checkpoint(None, entry)  # type: ignore[arg-type]
    assert signed == []
    monkeypatch.delenv("VEU_AUDIT_CHECKPOINT_EVERY")
    audit._maybe_checkpoint(None, entry)  # type: ignore[arg-type]
    assert signed == [1000]


# --- logLevel reaches the serve processes ---------------------------------------------------------

@pytest.mark.parametrize("level", ["DEBUG", "WARNING"])
def test_log_level_reaches_every_serve_process_in_a_form_uvicorn_accepts(level: str) -> None:
    """`veuctl serve` takes --log-level (default info) and ignores VEU_LOG_LEVEL; uvicorn only knows lower-case
    names, so the chart's upper-case value must be lowered or the server would not start."""
    import uvicorn.config

    objs = render({"logLevel": level, "database": {"type": "sqlite"}, "webhook": {"replicas": 1}})
    serves = [c for _, c in _containers(objs) if c.get("args", [])[:1] == ["serve"]]
    assert {c["name"] for c in serves} == {"webhook", "api"}
    for c in serves:
        (arg,) = [a for a in c["args"] if a.startswith("--log-level=")]
        value = arg.split("=", 1)[1]
        assert value == level.lower() and value in uvicorn.config.LOG_LEVELS, c["name"]
