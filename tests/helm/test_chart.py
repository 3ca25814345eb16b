"""The Helm chart renders valid Kubernetes objects with the reliability and least-privilege properties.

Rendered with Helm v4 as a library (helm-python-sdk), validated with kubernetes-validate against the
Kubernetes OpenAPI schemas, and the admission webhook's CEL matchConditions evaluated with cel-python.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import celpy
import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from controllers.jobspec import ACCELERATOR_RESOURCES, DRA_EXTENDED_RESOURCE_PREFIX, is_accelerator
from tests.helm.chart import (
    ALL_SETS,
    CHART,
    NAMESPACE,
    ci_values,
    of_kind,
    one,
    pod_specs,
    render,
    render_set,
)

# Oldest supported (chart kubeVersion >=1.30: matchConditions GA) and the newest schema shipped.
KUBE_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
CRD_KINDS = {"Certificate", "Issuer", "ServiceMonitor"}


# --- rendering, lint, schemas -------------------------------------------------------------------

@pytest.mark.parametrize("value_set", ALL_SETS)
def test_chart_lints_clean_in_strict_mode(value_set: str) -> None:
    report = helm.lint(CHART, ci_values(value_set), strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", ALL_SETS)
def test_every_rendered_object_is_valid_against_the_kubernetes_schema(value_set: str, kube_version: str) -> None:
    checked = 0
    for obj in render_set(value_set):
        if obj["kind"] in CRD_KINDS:
            continue  # CRDs have no schema in kubernetes-validate; see the structural test below
        kubernetes_validate.validate(obj, kube_version, strict=True)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_crd_objects_are_structurally_sound(value_set: str) -> None:
    """cert-manager and Prometheus-operator kinds: not in the core schemas, so check the fields we rely on."""
    objs = render_set(value_set)
    for cert in of_kind(objs, "Certificate"):
        assert cert["apiVersion"] == "cert-manager.io/v1"
        spec = cert["spec"]
        assert spec["secretName"] and spec["issuerRef"]["name"]
        if not spec.get("isCA"):
            assert "server auth" in spec["usages"]
            assert f"{objs[0]['metadata']['namespace']}" in " ".join(spec["dnsNames"])
    for issuer in of_kind(objs, "Issuer"):
        assert issuer["apiVersion"] == "cert-manager.io/v1"
        assert set(issuer["spec"]) & {"selfSigned", "ca"}
    for sm in of_kind(objs, "ServiceMonitor"):
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        if sm["metadata"]["name"].endswith(("-webhook-metrics", "-controllers-metrics")):
            assert endpoint["scheme"] == "http" and endpoint["port"] == "metrics"  # the process's own port
        else:
            assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["ca"]["secret"]["key"] == "ca.crt"


# --- the webhook configuration -------------------------------------------------------------------

def _webhooks(objs: Any) -> list[dict[str, Any]]:
    return [w for vwc in of_kind(objs, "ValidatingWebhookConfiguration") for w in vwc["webhooks"]]


def _excluded(webhook: dict[str, Any]) -> set[str]:
    exprs = webhook["namespaceSelector"]["matchExpressions"]
    (by_name,) = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name"]
    assert by_name["operator"] == "NotIn"
    return set(by_name["values"])


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_webhook_never_sees_kube_system_or_its_own_namespace(value_set: str) -> None:
    webhooks = _webhooks(render_set(value_set))
    assert webhooks
    for wh in webhooks:
        assert {"kube-system", NAMESPACE} <= _excluded(wh), wh["name"]


def test_self_exclusion_follows_the_release_namespace_even_when_the_operator_overrides_the_list() -> None:
    objs = render({"webhook": {"excludeNamespaces": []}}, namespace="governance")
    for wh in _webhooks(objs):
        assert _excluded(wh) == {"kube-system", "governance"}


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_webhook_calls_are_short_dry_run_safe_and_v1_only(value_set: str) -> None:
    for wh in _webhooks(render_set(value_set)):
        assert wh["timeoutSeconds"] == 3, "must stay well under the 10 s lease renew deadline (gatekeeper#870)"
        assert wh["sideEffects"] == "NoneOnDryRun"
        assert wh["admissionReviewVersions"] == ["v1"]
        assert wh["clientConfig"]["service"]["path"] == "/validate"
        for rule in wh["rules"]:
            assert set(rule["operations"]) == {"CREATE", "UPDATE"}
            assert rule["scope"] == "Namespaced"


def test_training_namespaces_fail_closed_by_default() -> None:
    webhooks = _webhooks(render_set("default"))
    assert {w["failurePolicy"] for w in webhooks} == {"Fail"}


def test_audit_only_mode_fails_open() -> None:
    assert {w["failurePolicy"] for w in _webhooks(render_set("audit-values"))} == {"Ignore"}


def test_cluster_admins_can_fail_open_one_namespace_by_label_when_enabled() -> None:
    webhooks = _webhooks(render({"webhook": {"namespaceFailurePolicyOverride": True}}))
    closed = [w for w in webhooks if w["failurePolicy"] == "Fail"]
    opened = [w for w in webhooks if w["failurePolicy"] == "Ignore"]
    assert len(closed) == len(opened) > 0
    for group, op in ((closed, "NotIn"), (opened, "In")):
        for w in group:
            (sel,) = [e for e in w["namespaceSelector"]["matchExpressions"]
                      if e["key"] == "veu-governor.io/failure-policy"]
            assert sel == {"key": "veu-governor.io/failure-policy", "operator": op, "values": ["Ignore"]}
            assert {"kube-system", NAMESPACE} <= _excluded(w)


def test_webhook_rules_name_only_the_job_kinds_the_product_reads() -> None:
    rules = [r for w in _webhooks(render_set("default")) for r in w["rules"]]
    seen = {(g, res) for r in rules for g in r["apiGroups"] for res in r["resources"] if "/" not in res}
    scaled = {(g, res.removesuffix("/scale")) for r in rules for g in r["apiGroups"] for res in r["resources"]
              if res.endswith("/scale")}
    # Every scale subresource the webhook judges is sent too (a scale-up beyond what was counted is refused):
    # the job CRDs' and the apps workload controllers' (an HPA on a GPU Deployment).
    from controllers.jobspec import KIND_OF_RESOURCE, READ_AS_OBJECT

    assert scaled == {(g, res) for g, res in seen if g not in ("", "batch")} == set(KIND_OF_RESOURCE) & seen
    # Any other subresource sent is one the webhook reads as its whole object (pods/ephemeralcontainers).
    other = {((g, res.split("/")[0]), res.split("/", 1)[1]) for r in rules for g in r["apiGroups"]
             for res in r["resources"] if "/" in res and not res.endswith("/scale")}
    assert other == set(READ_AS_OBJECT)
    assert seen == {
        ("batch", "jobs"), ("jobset.x-k8s.io", "jobsets"), ("kubeflow.org", "pytorchjobs"),
        ("kubeflow.org", "tfjobs"), ("kubeflow.org", "mpijobs"), ("kubeflow.org", "xgboostjobs"),
        ("kubeflow.org", "paddlejobs"), ("kubeflow.org", "jaxjobs"), ("kubeflow.org", "mxjobs"),
        ("trainer.kubeflow.org", "trainjobs"),
        ("ray.io", "rayjobs"), ("ray.io", "rayclusters"), ("leaderworkerset.x-k8s.io", "leaderworkersets"),
        ("batch.volcano.sh", "jobs"), ("kueue.x-k8s.io", "workloads"), ("", "pods"),
        ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets"),
    }
    assert not any("*" in x for r in rules for x in r["apiGroups"] + r["resources"] + r["apiVersions"])


# --- CEL matchConditions, evaluated ---------------------------------------------------------------

def _conditions_pass(webhook: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None,
                     user: str = "alice@example.com") -> bool:
    """All matchConditions true -> the API server calls the webhook (as in admission/plugin/webhook)."""
    env = celpy.Environment()
    activation = {
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel({"operation": "UPDATE" if old else "CREATE",
                                      "userInfo": {"username": user, "groups": ["system:authenticated"]}}),
    }
    for cond in webhook["matchConditions"]:
        result = env.program(env.compile(cond["expression"])).evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), (cond["name"], result)
        if not result:
            return False
    return True


def _job(resources: dict[str, Any] | None = None, *, init: bool = False, claims: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "train", "image": "trainer:1"}
    if resources is not None:
        container["resources"] = resources
    pod: dict[str, Any] = {"containers": [{"name": "sidecar", "image": "s:1"}], "restartPolicy": "Never"}
    if init:
        pod["initContainers"] = [container]
    else:
        pod["containers"].append(container)
    if claims:
        pod["resourceClaims"] = [{"name": "gpus", "resourceClaimTemplateName": "eight-h100"}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "t"},
            "spec": {"parallelism": 4, "template": {"spec": pod}}}


def _jobs_webhook(values: dict[str, Any] | None = None) -> dict[str, Any]:
    objs = render(values) if values else render_set("default")
    (wh,) = [w for w in _webhooks(objs) if w["name"] == "jobs.veu-governor.io"]
    return wh


@pytest.mark.parametrize("resources", [
    {"limits": {"nvidia.com/gpu": 8}},
    {"requests": {"nvidia.com/mig-3g.40gb": 1}},
    {"limits": {"google.com/tpu": 4}},
    {"limits": {"aws.amazon.com/neuroncore": 32}},
    {"limits": {"amd.com/gpu": 8}},
    {"limits": {"habana.ai/gaudi": 8}},
])
def test_a_job_requesting_accelerators_is_sent_to_the_webhook(resources: dict[str, Any]) -> None:
    assert _conditions_pass(_jobs_webhook(), _job(resources))


def test_accelerators_hidden_in_an_init_container_or_a_dra_claim_are_still_sent() -> None:
    wh = _jobs_webhook()
    assert _conditions_pass(wh, _job({"limits": {"nvidia.com/gpu": 1}}, init=True))
    assert _conditions_pass(wh, _job(None, claims=True))


def test_a_cpu_only_job_is_not_sent_so_an_outage_cannot_block_it() -> None:
    wh = _jobs_webhook()
    assert not _conditions_pass(wh, _job({"limits": {"cpu": "4", "memory": "8Gi"}}))
    assert not _conditions_pass(wh, _job(None))


def test_a_metadata_only_update_by_a_controller_is_not_sent_but_a_scale_up_is() -> None:
    wh = _jobs_webhook()
    old = _job({"limits": {"nvidia.com/gpu": 8}})
    finalized = {**old, "metadata": {**old["metadata"], "finalizers": ["batch.kubernetes.io/job-tracking"]}}
    assert not _conditions_pass(wh, finalized, old)
    scaled = {**old, "spec": {**old["spec"], "parallelism": 64}}
    assert _conditions_pass(wh, scaled, old)


def test_an_hpa_scaling_a_deployment_through_its_scale_subresource_is_sent() -> None:
    (wh,) = [w for w in _webhooks(render_set("default")) if w["name"].startswith("workloads.")]
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "inf", "namespace": "t"},
             "spec": {"replicas": 40}}
    hpa = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    assert _conditions_pass(wh, scale, {**scale, "spec": {"replicas": 4}}, user=hpa)


def test_pods_are_sent_unless_a_trusted_controller_created_them_for_an_owner() -> None:
    (wh,) = [w for w in _webhooks(render_set("default")) if w["name"].startswith("pods.")]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "t"},
           "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}
    assert _conditions_pass(wh, pod)
    owned = {**pod, "metadata": {**pod["metadata"], "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u1", "controller": True}]}}
    assert not _conditions_pass(wh, owned, user="system:serviceaccount:kube-system:job-controller")
    # A user can write any ownerReference: a bare pod claiming a Job is still sent (and decided on its own).
    assert _conditions_pass(wh, owned, user="alice@example.com")
    # The same rule for a JobSet's child Jobs: its controller's are counted at the JobSet, anyone else's sent.
    child = {**_job({"limits": {"nvidia.com/gpu": 8}}), "metadata": {"name": "j", "namespace": "t", "ownerReferences": [
        {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": "js", "uid": "u2", "controller": True}]}}
    jobset_controller = "system:serviceaccount:jobset-system:jobset-controller-manager"
    assert not _conditions_pass(_jobs_webhook(), child, user=jobset_controller)
    assert _conditions_pass(_jobs_webhook(), child)
    off = [w for w in _webhooks(render({"webhook": {"kinds": {"pods": False}}})) if w["name"].startswith("pods.")]
    assert off == []


def test_trusted_controllers_are_one_list_for_the_match_conditions_and_the_pack() -> None:
    objs = render({"admission": {"trustedControllers": ["system:serviceaccount:ml:my-operator"]}})
    (wh,) = [w for w in _webhooks(objs) if w["name"].startswith("pods.")]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "t", "ownerReferences": [
        {"apiVersion": "example.com/v1", "kind": "MyJob", "name": "m", "uid": "u", "controller": True}]},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}
    # A trusted controller's child is skipped only when its owner is a kind the webhook decides (counted there):
    # a custom MyJob is not one, so its pods are sent and decided as jobs of their own.
    assert _conditions_pass(wh, pod, user="system:serviceaccount:ml:my-operator")
    of_job = {**pod, "metadata": {**pod["metadata"], "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": True}]}}
    assert not _conditions_pass(wh, of_job, user="system:serviceaccount:ml:my-operator")
    assert _conditions_pass(wh, of_job, user="system:serviceaccount:kube-system:job-controller")
    cm = one(objs, "ConfigMap", "-policies")
    pack = yaml.safe_load(cm["data"]["00-helm-admission-settings.yaml"])
    assert pack["provisions"][0]["values"]["trusted_controllers"] == ["system:serviceaccount:ml:my-operator"]


@pytest.mark.parametrize("resource", [
    *sorted(ACCELERATOR_RESOURCES), "nvidia.com/mig-1g.10gb", "nvidia.com/mig-1g.10gb.me", "amd.com/spx_nps1",
    "amd.com/cpx_nps4", "deviceclass.resource.kubernetes.io/gpu.example.com",
])
def test_every_resource_the_admission_path_reads_is_sent_to_it_by_default(resource: str) -> None:
    """A Pod or Job asking only for a resource the readers count (or refuse, as a DRA device class) must reach
    the webhook: one the default prefixes miss is admitted unread, its chips never counted."""
    assert is_accelerator(resource) or resource.startswith(DRA_EXTENDED_RESOURCE_PREFIX)
    assert _conditions_pass(_jobs_webhook(), _job({"limits": {resource: 8}})), resource
    assert _conditions_pass(_jobs_webhook(), _job({"requests": {resource: 8}}, init=True)), resource


def test_operator_accelerator_prefixes_drive_the_match_condition() -> None:
    wh = _jobs_webhook({"webhook": {"acceleratorResourcePrefixes": ["example.com/npu"]}})
    assert _conditions_pass(wh, _job({"limits": {"example.com/npu": 2}}))
    assert not _conditions_pass(wh, _job({"limits": {"nvidia.com/gpu": 8}}))


# --- availability -----------------------------------------------------------------------------------

def test_webhook_runs_three_spread_replicas_with_a_disruption_budget_and_priority() -> None:
    objs = render_set("default")
    dep = one(objs, "Deployment", "-webhook")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = dep["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    keys = {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname": "DoNotSchedule", "topology.kubernetes.io/zone": "ScheduleAnyway"}
    pdb = one(objs, "PodDisruptionBudget", "-webhook")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    (container,) = pod["containers"]
    assert container["args"][:1] == ["serve"] and "--tls-cert=/tls/tls.crt" in container["args"]
    for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"]["path"] == path and container[probe]["httpGet"]["scheme"] == "HTTPS"


def test_ha_value_set_spreads_hard_across_zones() -> None:
    objs = render_set("ha-values")
    pod = one(objs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    assert all(c["whenUnsatisfiable"] == "DoNotSchedule" for c in pod["topologySpreadConstraints"])
    assert one(objs, "PodDisruptionBudget", "-webhook")["spec"]["minAvailable"] == 2
    assert one(objs, "Deployment", "-agent")["spec"]["replicas"] == 3


def test_agent_is_leader_elected_with_rights_to_its_own_lease_only() -> None:
    objs = render_set("default")
    agent = one(objs, "Deployment", "-agent")
    (container,) = agent["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["agent", "run"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The config file the chart writes is the one `veuctl agent run` reads, and it validates.
    from agent.collectors.config import AgentConfig

    cm = one(objs, "ConfigMap", "-agent-config")
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "agent-config"]
    assert env["VEU_AGENT_CONFIG"] == f"{mount['mountPath']}/config.yaml"
    cfg = AgentConfig.model_validate(yaml.safe_load(cm["data"]["config.yaml"]))
    le = cfg.leader_election
    assert le.enabled is True and le.namespace == NAMESPACE
    assert le.lease_duration_seconds > le.renew_deadline_seconds > le.retry_period_seconds
    assert [c.name for c in cfg.enabled()] == ["k8s"]
    role = one(objs, "Role", "-agent-lease")
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": [le.lease_name], "verbs": ["get", "update", "patch"]}]


def test_namespace_label_mappings_the_agent_syncs_are_the_ones_the_webhook_reads() -> None:
    from agent.collectors.config import AgentConfig
    from agent.collectors.k8s_nodes import K8sConfig

    objs = render_set("default")
    cfg = AgentConfig.model_validate(yaml.safe_load(one(objs, "ConfigMap", "-agent-config")["data"]["config.yaml"]))
    labelled = {c.name for c in K8sConfig.model_validate(cfg.collectors["k8s"]).clusters if c.customer_label}
    (webhook,) = [c for c in one(objs, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"]
                  if c["name"] == "webhook"]
    env = {e["name"]: e.get("value") for e in webhook["env"]}
    assert env["VEU_CLUSTER"] in labelled
    agent_rules = one(objs, "ClusterRole", "-agent")["rules"]
    assert any("namespaces" in r["resources"] and {"list", "watch"} <= set(r["verbs"]) for r in agent_rules)


# --- security -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value_set", ALL_SETS)
def test_every_container_runs_non_root_read_only_without_capabilities(value_set: str) -> None:
    specs = pod_specs(render_set(value_set))
    assert specs
    for where, pod in specs:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
            assert "memory" in c["resources"]["limits"], (where, c["name"])
            assert not c["image"].endswith(":latest")


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_rbac_is_least_privilege_without_wildcards_or_cluster_admin(value_set: str) -> None:
    objs = render_set(value_set)
    for role in of_kind(objs, "ClusterRole") + of_kind(objs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            if "secrets" in rule["resources"] or "validatingwebhookconfigurations" in rule["resources"]:
                # Only the certificate rotation job, only its own objects by name, never create/delete.
                assert role["metadata"]["name"].endswith("-cert-rotation"), role["metadata"]["name"]
                assert rule.get("resourceNames") and set(rule["verbs"]) == {"get", "patch"}
    for binding in of_kind(objs, "ClusterRoleBinding") + of_kind(objs, "RoleBinding"):
        assert binding["roleRef"]["name"] not in {"cluster-admin", "admin", "edit"}
    # The webhook calls no Kubernetes API (the agent keeps namespace mappings in the store): no role of its own,
    # and no token; when the agent shares its pod (SQLite) only the agent and controllers containers mount one.
    pod = one(objs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert one(objs, "ServiceAccount", "-webhook")["automountServiceAccountToken"] is False
    token = "/var/run/secrets/kubernetes.io/serviceaccount"
    with_token = {c["name"] for c in pod["containers"]
                  if any(m["mountPath"] == token for m in c.get("volumeMounts", []))}
    sqlite = any(c["name"] == "agent" for c in pod["containers"])
    assert with_token == ({"agent", "controllers"} & {c["name"] for c in pod["containers"]} if sqlite else set())
    assert not [r for r in of_kind(objs, "ClusterRole") + of_kind(objs, "Role")
                if r["metadata"]["name"].endswith("-webhook")]
    agent = one(objs, "ClusterRole", "-agent")
    writes = {(g, r) for rule in agent["rules"] if set(rule["verbs"]) - {"get", "list", "watch"}
              for g in rule["apiGroups"] for r in rule["resources"]}
    allowed = {("", "events"), ("events.k8s.io", "events"), ("wgpolicyk8s.io", "policyreports"),
               ("openreports.io", "reports"), ("kueue.x-k8s.io", "workloads/status"),
               ("kueue.x-k8s.io", "admissionchecks/status")}
    assert writes <= allowed, writes - allowed
    if value_set == "default":
        assert ("wgpolicyk8s.io", "policyreports") in writes and ("openreports.io", "reports") not in writes


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_network_policies_isolate_every_component(value_set: str) -> None:
    objs = render_set(value_set)
    selected = {tuple(sorted(np["spec"]["podSelector"]["matchLabels"].items()))
                for np in of_kind(objs, "NetworkPolicy")}
    for kind in ("Deployment", "Job", "CronJob"):
        for o in of_kind(objs, kind):
            template = o["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else o["spec"]["template"]
            labels = template["metadata"]["labels"]
            assert tuple(sorted(labels.items())) in selected, o["metadata"]["name"]
    for np in of_kind(objs, "NetworkPolicy"):
        assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}


# --- TLS ------------------------------------------------------------------------------------------

def _verify(issuer: x509.Certificate, cert: x509.Certificate) -> None:
    key = issuer.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    else:  # pragma: no cover
        raise AssertionError(type(key))


def test_self_signed_ca_in_the_webhook_config_verifies_the_serving_certificate_for_the_service() -> None:
    objs = render_set("default")
    tls = one(objs, "Secret", "-tls")
    assert tls["type"] == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["tls.crt"]))
    bundles = {w["clientConfig"]["caBundle"] for w in _webhooks(objs)}
    assert len(bundles) == 1
    (ca,) = x509.load_pem_x509_certificates(base64.b64decode(bundles.pop()))
    _verify(ca, cert)
    svc = one(objs, "Service", "-governor")["metadata"]["name"]  # the webhook Service, not "-api"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{svc}.{NAMESPACE}.svc" in sans
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_after_utc - now > dt.timedelta(days=300)
    assert ca.not_valid_after_utc - now > dt.timedelta(days=3000)
    not_after = int(tls["metadata"]["annotations"]["veu-governor.io/not-after-unix"])
    assert abs(not_after - cert.not_valid_after_utc.timestamp()) < 3600, "renewal decisions read this annotation"
    # The webhook pods mount exactly this Secret at the paths `veuctl serve` is given.
    pod = one(objs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert vol["secret"]["secretName"] == tls["metadata"]["name"]


def _sans(secret: dict[str, Any]) -> list[str]:
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def test_the_serving_certificate_names_the_api_service_too_so_its_clients_verify_it_without_a_server_name() -> None:
    objs = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    api_svc = one(objs, "Service", "-api")["metadata"]["name"]
    webhook_svc = one(objs, "Service", "-governor")["metadata"]["name"]
    tls = one(objs, "Secret", "-tls")
    sans = _sans(tls)
    for svc in (webhook_svc, api_svc):
        full = f"{svc}.{NAMESPACE}.svc"
        assert {svc, f"{svc}.{NAMESPACE}", full, f"{full}.cluster.local"} <= set(sans)
    # A later upgrade re-issues a certificate whose names differ from these (this annotation is compared).
    assert tls["metadata"]["annotations"]["veu-governor.io/dns-names"] == ",".join(sans)
    sm = one(objs, "ServiceMonitor", "-governor")
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["tlsConfig"]["serverName"] == f"{api_svc}.{NAMESPACE}.svc"
    # The rotation CronJob is told both Services, webhook first (its CN and CA name).
    cron = one(objs, "CronJob", "-cert-rotation")
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["SERVICE"] == f"{webhook_svc},{api_svc}"
    # With cert-manager the Certificate asks for the same names.
    (cert,) = [c for c in of_kind(render_set("cert-manager-values"), "Certificate") if not c["spec"].get("isCA")]
    assert f"{api_svc}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    # Without the API, only the webhook's names.
    alone = _sans(one(render({"api": {"enabled": False}}), "Secret", "-tls"))
    assert not [n for n in alone if n.startswith(api_svc)] and f"{webhook_svc}.{NAMESPACE}.svc" in alone


def test_cert_manager_mode_injects_the_ca_and_ships_no_private_key() -> None:
    objs = render_set("cert-manager-values")
    assert not [s for s in of_kind(objs, "Secret") if "tls.key" in s.get("data", {})]
    (vwc,) = of_kind(objs, "ValidatingWebhookConfiguration")
    serving = [c for c in of_kind(objs, "Certificate") if not c["spec"].get("isCA")]
    (cert,) = serving
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{cert['metadata']['name']}"
    assert all("caBundle" not in w["clientConfig"] for w in vwc["webhooks"])
    assert cert["spec"]["renewBefore"] == "720h"


# --- database and migrations ----------------------------------------------------------------------

def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_with_their_secret_and_account() -> None:
    objs = render_set("cert-manager-values")  # chart-managed URL Secret
    job = one(objs, "Job", "-migrate")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade", "--json"]
    # Everything the hook Job needs must itself be a hook with a lower weight (it runs before the release).
    secret = one(objs, "Secret", "-db")
    sa = one(objs, "ServiceAccount", "-migrate")
    for dep in (secret, sa):
        assert dep["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(dep["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
    ref = container["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "url"}
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_production_default_reads_the_database_url_from_an_existing_secret() -> None:
    objs = render_set("default")
    assert not [s for s in of_kind(objs, "Secret") if s["metadata"]["name"].endswith("-db")]
    for where, pod in pod_specs(objs):
        if where.startswith(("Pod/", "CronJob/")):
            continue  # the `helm test` pod and the certificate rotation open no database
        for c in pod["containers"]:
            (url,) = [e for e in c["env"] if e["name"] == "VEU_DATABASE_URL"]
            assert url["valueFrom"]["secretKeyRef"] == {"name": "veu-governor-database", "key": "url"}


def test_sqlite_trial_is_one_pod_with_agent_and_controllers_beside_the_webhook_and_a_kept_volume() -> None:
    objs = render_set("sqlite-trial-values")
    assert not of_kind(objs, "Job")
    assert not [d for d in of_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-agent")]
    dep = one(objs, "Deployment", "-webhook")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["webhook", "api", "agent", "controllers"]
    assert [c["args"] for c in pod["initContainers"]] == [["db", "upgrade", "--json"]]
    pvc = one(objs, "PersistentVolumeClaim", "-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for c in pod["containers"] + pod["initContainers"]:
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["VEU_DATABASE_URL"] == "sqlite:////data/veu.db"
        assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert not of_kind(objs, "PodDisruptionBudget"), "a PDB of 1 with 1 replica would block every drain"


def test_migration_command_used_by_the_chart_exists_and_migrates(db_url: str) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    result = CliRunner().invoke(app, ["db", "upgrade", "--json"])
    assert result.exit_code == 0, result.output
    assert '"status": "up to date"' in result.output


# --- values validation --------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"webhook": {"failurePolicy": "Sometimes"}}, "'Fail', 'Ignore'"),
    ({"webhook": {"replicas": 0}}, "/webhook/replicas"),
    ({"webhook": {"timeoutSeconds": 30}}, "/webhook/timeoutSeconds"),
    ({"database": {"type": "sqlite"}}, "/webhook/replicas"),
    ({"admission": {"mode": "audit"}}, "/webhook/failurePolicy"),
    ({"admission": {"mode": "block"}}, "/admission/mode"),
    ({"securityContext": {"readOnlyRootFilesystem": False, "allowPrivilegeEscalation": False}},
     "/securityContext/readOnlyRootFilesystem"),
    ({"image": {"digest": "sha256:123"}}, "/image/digest"),
    ({"webhook": {"acceleratorResourcePrefixes": ["nvidia.com/') || true || ('"]}}, "acceleratorResourcePrefixes"),
    ({"webhook": {"replica": 3}}, "replica"),
])
def test_schema_rejects_bad_values_naming_the_field(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    assert message in str(err.value)


@pytest.mark.parametrize(("values", "message"), [
    ({"database": {"existingSecret": ""}}, "database.type=postgresql needs the database URL"),
    ({"agent": {"leaderElection": {"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10}}},
     "leaseDurationSeconds > renewDeadlineSeconds + retryPeriodSeconds"),
    # A leader notices a missed renew deadline only when an attempt ends, up to a retry period later.
    ({"agent": {"leaderElection": {"leaseDurationSeconds": 12, "renewDeadlineSeconds": 10, "retryPeriodSeconds": 2}}},
     "agent.leaderElection: needs leaseDurationSeconds > renewDeadlineSeconds + retryPeriodSeconds"),
    ({"controllers": {"leaderElection": {"leaseDurationSeconds": 11, "renewDeadlineSeconds": 10,
                                         "retryPeriodSeconds": 2}}},
     "controllers.leaderElection: needs leaseDurationSeconds > renewDeadlineSeconds + retryPeriodSeconds"),
    ({"webhook": {"replicas": 2, "pdb": {"minAvailable": 2}}}, "would block every node drain"),
])
def test_cross_field_mistakes_fail_the_render_with_a_fix(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render(values, name="veu", namespace=NAMESPACE)
    assert message in str(err.value)


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_every_volume_mount_and_config_reference_resolves(value_set: str) -> None:
    """The API server accepts a pod whose mount names a missing volume only to fail it at start."""
    objs = render_set(value_set)
    config_maps = {o["metadata"]["name"] for o in of_kind(objs, "ConfigMap")}
    for where, pod in pod_specs(objs):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"] + pod.get("initContainers", []):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, (where, c["name"], m["name"])
        for v in volumes.values():
            if "configMap" in v and v["configMap"]["name"].startswith("veu-"):
                assert v["configMap"]["name"] in config_maps, (where, v)
        sa = pod.get("serviceAccountName")
        if sa:
            assert sa in {o["metadata"]["name"] for o in of_kind(objs, "ServiceAccount")}, (where, sa)


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_every_command_the_chart_runs_exists_in_veuctl_with_those_options(value_set: str) -> None:
    """The image's ENTRYPOINT is veuctl; click rejects an unknown command or option even with --help."""
    from typer.testing import CliRunner

    from agent.cli import app

    seen = set()
    for where, pod in pod_specs(render_set(value_set)):
        for c in pod["containers"] + pod.get("initContainers", []):
            if "command" in c:
                continue  # python scripts (cert rotation, helm test), not veuctl
            result = CliRunner().invoke(app, [*c["args"], "--help"])
            assert result.exit_code == 0, (where, c["name"], c["args"], result.output[-400:])
            seen.add(" ".join(a for a in c["args"] if not a.startswith("-")))
    assert {"serve", "agent run"} <= seen
    assert "admission controllers" in seen and "db upgrade" in seen
