"""What an operator hits on a real cluster: scheduling around tainted nodes, dashboard sessions across API
replicas, pods that must restart when their configuration changes, and probe values that must reach the pod."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import helm_python as helm
import kmock
import pytest
import yaml
from kubernetes.client import ApiClient, Configuration, CoreV1Api

from tests.helm.chart import CHART, NAMESPACE, RELEASE, of_kind, one, render, render_set

SQLITE = {"database": {"type": "sqlite"}, "webhook": {"replicas": 1}}


# --- scheduling: tainted GPU nodes and cordoned nodes ----------------------------------------------

def _tolerates(pod: dict[str, Any], taint: dict[str, str]) -> bool:
    for t in pod.get("tolerations") or []:
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") == taint["key"] and (not t.get("effect") or t["effect"] == taint["effect"]) and (
                t.get("operator") == "Exists" or t.get("value") == taint.get("value")):
            return True
    return False


def _placeable(pod: dict[str, Any], nodes: dict[str, list[dict[str, str]]], placed: dict[str, int]) -> list[str]:
    """Nodes where one more replica passes the TaintToleration and PodTopologySpread (DoNotSchedule) filters.

    The spread filter as the scheduler applies it to a hostname constraint: the skew is the candidate's count + 1
    minus the smallest count over the eligible domains. With nodeTaintsPolicy Ignore (the API default) every node is
    eligible; with Honor only the nodes whose taints the pod tolerates (KEP-3094)."""
    fits = [n for n, taints in nodes.items() if all(_tolerates(pod, t) for t in taints)]
    for c in pod["topologySpreadConstraints"]:
        if c["topologyKey"] != "kubernetes.io/hostname" or c["whenUnsatisfiable"] != "DoNotSchedule":
            continue
        eligible = fits if c.get("nodeTaintsPolicy", "Ignore") == "Honor" else list(nodes)
        low = min(placed.get(n, 0) for n in eligible)
        fits = [n for n in fits if placed.get(n, 0) + 1 - low <= c["maxSkew"]]
    return fits


def _webhook_pod() -> dict[str, Any]:
    return dict(one(render_set("default"), "Deployment", "-webhook")["spec"]["template"]["spec"])


def test_tainted_gpu_nodes_do_not_hold_the_third_webhook_replica_pending() -> None:
    # Two system nodes run the first two replicas; the GPU nodes carry the usual NoSchedule taint.
    gpu_taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    nodes = {"system-a": [], "system-b": [], **{f"gpu-{i}": [gpu_taint] for i in range(4)}}
    assert _placeable(_webhook_pod(), nodes, {"system-a": 1, "system-b": 1}) == ["system-a", "system-b"]


def test_draining_a_node_leaves_the_evicted_webhook_replica_a_place_to_go() -> None:
    cordoned = {"key": "node.kubernetes.io/unschedulable", "value": "", "effect": "NoSchedule"}
    nodes = {"a": [cordoned], "b": [], "c": []}
    # The replica that ran on the cordoned node "a" has been evicted; b and c hold one each.
    assert _placeable(_webhook_pod(), nodes, {"b": 1, "c": 1}) == ["b", "c"]


def test_a_toleration_on_the_webhook_makes_the_tolerated_nodes_spread_domains_again() -> None:
    gpu_taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    objs = render({"webhook": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                "effect": "NoSchedule"}]}})
    pod = one(objs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    nodes = {"system-a": [], "gpu-0": [gpu_taint]}
    assert _placeable(pod, nodes, {"system-a": 1}) == ["gpu-0"], "spread onto the tolerated node first"


# --- dashboard sessions across API replicas --------------------------------------------------------

def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in pod["containers"] if c["name"] == name]
    return dict(c)


def _api_pods(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in of_kind(objs, "Deployment")
            if any(c["name"] == "api" for c in d["spec"]["template"]["spec"]["containers"])]


def _session_key(objs: list[dict[str, Any]], container: dict[str, Any]) -> str:
    """The VEU_SESSION_SECRET the container starts with, resolved from the rendered Secret."""
    (entry,) = [e for e in container["env"] if e["name"] == "VEU_SESSION_SECRET"]
    ref = entry["valueFrom"]["secretKeyRef"]
    secret = one(objs, "Secret", ref["name"][len(f"{RELEASE}-veu-governor"):])
    assert secret["metadata"]["name"] == ref["name"]
    return base64.b64decode(secret["data"][ref["key"]]).decode()


@pytest.mark.parametrize("values", [{}, SQLITE], ids=["api-deployment", "sqlite-pod"])
def test_every_api_replica_signs_dashboard_sessions_with_one_kept_key(values: dict[str, Any]) -> None:
    from agent.api.routes.auth import _serializer

    objs = render(values)
    (pod,) = _api_pods(objs)
    key = _session_key(objs, _container(pod, "api"))
    assert len(key) >= 32
    # A cookie one replica signs is read by any other: they start from the same pod template and Secret.
    cookie = _serializer(key).dumps({"name": "alice", "role": "viewer"})
    assert _serializer(_session_key(objs, _container(pod, "api"))).loads(cookie)["name"] == "alice"


def test_an_operators_own_session_secret_replaces_the_charts() -> None:
    own = {"name": "VEU_SESSION_SECRET", "valueFrom": {"secretKeyRef": {"name": "my-session", "key": "k"}}}
    objs = render({"api": {"extraEnv": [own]}})
    (pod,) = _api_pods(objs)
    assert [e for e in _container(pod, "api")["env"] if e["name"] == "VEU_SESSION_SECRET"] == [own]
    assert not [s for s in of_kind(objs, "Secret") if s["metadata"]["name"].endswith("-session")]


def test_no_session_secret_without_the_api() -> None:
    objs = render({"api": {"enabled": False}})
    assert not [s for s in of_kind(objs, "Secret") if s["metadata"]["name"].endswith("-session")]


@pytest.mark.asyncio
async def test_upgrade_keeps_the_session_key_so_nobody_is_signed_out(kmock: kmock.KubernetesEmulator) -> None:
    first = render()
    session = one(first, "Secret", "-session")
    kmock.resources["v1/secrets"] = kmock.ResourceInfo(kind="Secret", namespaced=True)
    url = str(kmock.url).rstrip("/")
    with ApiClient(Configuration(host=url)) as client:
        await asyncio.to_thread(CoreV1Api(client).create_namespaced_secret, NAMESPACE, session)

    def upgrade() -> dict[str, str]:
        with helm.Config(kube_apiserver=url, namespace=NAMESPACE) as cfg, helm.Chart.load(CHART) as chart:
            return cfg.render(chart, {}, name=RELEASE, namespace=NAMESPACE, is_upgrade=True, revision=2)

    manifests = await asyncio.to_thread(upgrade)
    objs = [d for p, t in manifests.items() if not p.endswith(".txt") for d in yaml.safe_load_all(t) if d]
    (pod,) = _api_pods(objs)
    assert _session_key(objs, _container(pod, "api")) == _session_key(first, _container(_api_pods(first)[0], "api"))


# --- pods restart when what they read at start changes --------------------------------------------

def _templates(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in of_kind(objs, "Deployment")}


def test_changing_the_database_url_rolls_every_pod_that_reads_it() -> None:
    before = _templates(render({"database": {"url": "postgresql+psycopg://veu:old@db-a:5432/veu"}}))
    after = _templates(render({"database": {"url": "postgresql+psycopg://veu:new@db-b:5432/veu"}}))
    assert set(before) == set(after) and len(before) == 4
    for name, template in before.items():
        assert template != after[name], f"{name} would keep the old database after the upgrade"


def test_changing_the_agent_collectors_rolls_the_sqlite_trial_pod() -> None:
    def webhook_template(label: str) -> dict[str, Any]:
        clusters = [{"name": "in-cluster", "in_cluster": True, "customer_label": label}]
        objs = render({**SQLITE, "agent": {"collectors": {"k8s": {"clusters": clusters}}}})
        return dict(one(objs, "Deployment", "-webhook")["spec"]["template"])

    assert webhook_template("a.example/customer") != webhook_template("b.example/customer")


# --- probe values reach the probe -----------------------------------------------------------------

def test_the_webhook_startup_probe_timeout_value_reaches_the_probe() -> None:
    objs = render({"webhook": {"probes": {"startup": {"timeoutSeconds": 4}}}})
    webhook = _container(one(objs, "Deployment", "-webhook")["spec"]["template"]["spec"], "webhook")
    assert webhook["startupProbe"]["timeoutSeconds"] == 4


# --- what an outage blocks, as the docs tell it ---------------------------------------------------

def test_the_break_glass_docs_say_an_outage_also_refuses_scaling_cpu_only_workloads() -> None:
    from tests.helm.test_chart import _conditions_pass, _webhooks

    (wh,) = [w for w in _webhooks(render_set("default")) if w["name"].startswith("workloads.")]
    # A Scale carries no pod template: the HPA scaling a CPU-only web Deployment is sent like a GPU one.
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "t"},
             "spec": {"replicas": 6}}
    assert _conditions_pass(wh, scale, {**scale, "spec": {"replicas": 3}},
                            user="system:serviceaccount:kube-system:horizontal-pod-autoscaler")
    docs = (CHART.parents[1] / "docs" / "operations.md").read_text()
    symptoms = docs.split("## Break-glass", 1)[1].split("1. Look first", 1)[0]
    assert "CPU-only workloads" not in symptoms or "scale" in symptoms, symptoms


# --- self-signed certificate lifetimes that cannot work -------------------------------------------

@pytest.mark.parametrize(("self_signed", "message"), [
    ({"caValidityDays": 365, "certValidityDays": 365}, "caValidityDays=365 must exceed certValidityDays=365"),
    ({"caValidityDays": 90}, "caValidityDays=90 must exceed certValidityDays=365"),
    ({"renewBeforeDays": 400}, "renewBeforeDays=400 must be below certValidityDays=365"),
])
def test_a_ca_shorter_lived_than_its_certificate_or_a_renewal_window_past_it_fails_the_render(
        self_signed: dict[str, int], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render({"tls": {"selfSigned": self_signed}}, name=RELEASE, namespace=NAMESPACE)
    assert message in str(err.value)


def test_self_signed_lifetimes_are_not_checked_when_cert_manager_issues_the_certificate() -> None:
    objs = render({"tls": {"certManager": {"enabled": True}, "selfSigned": {"caValidityDays": 30}}})
    assert of_kind(objs, "Certificate")


# --- metering does not vanish silently ------------------------------------------------------------

@pytest.mark.parametrize("values", [{}, SQLITE], ids=["postgresql", "sqlite"])
def test_disabling_the_agent_while_metering_is_on_fails_the_render_instead_of_dropping_the_meter(
        values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render({**values, "agent": {"enabled": False}}, name=RELEASE, namespace=NAMESPACE)
    assert "controllers.enabled" in str(err.value) and "agent.enabled=true" in str(err.value)
    objs = render({**values, "agent": {"enabled": False}, "controllers": {"enabled": False}})
    assert not [c for d in of_kind(objs, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]
                if c["name"] in {"agent", "controllers"}]


def test_the_security_docs_name_every_port_the_webhook_pods_accept() -> None:
    policy = one(render_set("default"), "NetworkPolicy", "-webhook")
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {8443, 9090}
    docs = (CHART.parents[1] / "docs" / "operations.md").read_text()
    bullet = docs.split("- NetworkPolicy: webhook pods", 1)[1].split("\n- ", 1)[0]
    assert all(str(p) in bullet for p in ports), bullet
