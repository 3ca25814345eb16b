"""The chart gives the webhook a port that serves only the webhook, and the API/dashboard their own.

Issue requirement: the webhook accepts only the API server's calls (TLS; optional client-certificate check)
and exposes nothing else on its port. The rendered objects are checked for who owns which port, and the
last test starts the rendered webhook and API containers' own command lines (`veuctl serve ...`) with the
chart's certificate and checks what each port answers. The app-level proof that `create_webhook_app`
exposes only /validate and the probes is `tests/security/test_webhook_port.py`.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import kubernetes_validate
import pytest

from tests.helm.chart import ALL_SETS, CHART, NAMESPACE, ci_values, of_kind, one, render, render_set
from tests.helm.test_chart import _webhooks
from tests.webhook.conftest import review

CLIENT_AUTH_CM = {"webhook": {"clientAuth": {"enabled": True, "caConfigMap": "apiserver-client-ca"}}}
CLIENT_AUTH_SECRET = {"webhook": {"clientAuth": {"enabled": True, "caSecret": "apiserver-client-ca",
                                                 "caKey": "bundle.pem"}}}


def _webhook_pod(objs: Any) -> dict[str, Any]:
    return dict(one(objs, "Deployment", "-webhook")["spec"]["template"])


def _container(pod_template: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in pod_template["spec"]["containers"] if c["name"] == name]
    return dict(c)


def _webhook_service(objs: Any) -> dict[str, Any]:
    return one(objs, "Service", "-governor")


def _api_service(objs: Any) -> dict[str, Any]:
    return one(objs, "Service", "-api")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _backends(objs: Any, service: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """(container, container port) behind every port of a Service, resolved like kube-proxy does."""
    out = []
    for o in of_kind(objs, "Deployment"):
        template = o["spec"]["template"]
        if not _selects(service["spec"]["selector"], template["metadata"]["labels"]):
            continue
        for sp in service["spec"]["ports"]:
            target = sp["targetPort"]
            for c in template["spec"]["containers"]:
                for cp in c.get("ports", []):
                    if target in (cp.get("name"), cp["containerPort"]):
                        out.append((c, cp["containerPort"]))
    return out


# --- who serves which port ------------------------------------------------------------------------

@pytest.mark.parametrize("value_set", ALL_SETS)
def test_webhook_container_runs_serve_webhook_only(value_set: str) -> None:
    objs = render_set(value_set)
    webhook = _container(_webhook_pod(objs), "webhook")
    assert webhook["args"][:2] == ["serve", "--webhook-only"]
    assert [(p["name"], p["containerPort"]) for p in webhook["ports"]] == [("webhook", 8443), ("metrics", 9090)]
    assert "--metrics-port=9090" in webhook["args"]
    # Every other `veuctl serve` in the release is the API's, on another port, never the webhook's.
    for o in of_kind(objs, "Deployment"):
        for c in o["spec"]["template"]["spec"]["containers"]:
            if c["args"][:1] == ["serve"] and c["name"] != "webhook":
                assert c["name"] == "api" and "--webhook-only" not in c["args"], (o["metadata"]["name"], c["name"])
                assert "--port=8443" not in c["args"]


def test_webhook_probes_call_the_health_endpoints_the_webhook_only_app_keeps(db_url: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_webhook_app

    webhook = _container(_webhook_pod(render_set("default")), "webhook")
    with TestClient(create_webhook_app(db_url)) as client:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = webhook[probe]["httpGet"]
            assert get["port"] == "webhook" and get["scheme"] == "HTTPS"
            assert client.get(get["path"]).status_code == 200, (probe, get["path"])
        assert client.post("/validate", json=_review()).status_code == 200
        assert client.get("/api/v1/sites").status_code == 404


def test_webhook_service_targets_only_the_webhook_container_port() -> None:
    for value_set in ("default", "sqlite-trial-values"):
        objs = render_set(value_set)
        svc = _webhook_service(objs)
        (port,) = svc["spec"]["ports"]
        assert port["targetPort"] == "webhook"
        backends = _backends(objs, svc)
        assert backends and {(c["name"], p) for c, p in backends} == {("webhook", 8443)}, value_set
        assert all("--webhook-only" in c["args"] for c, _ in backends)


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_webhook_configuration_calls_the_webhook_service_on_its_port(value_set: str) -> None:
    objs = render_set(value_set)
    svc = _webhook_service(objs)
    webhooks = _webhooks(objs)
    assert webhooks
    for wh in webhooks:
        ref = wh["clientConfig"]["service"]
        assert ref == {"name": svc["metadata"]["name"], "namespace": NAMESPACE, "path": "/validate",
                       "port": svc["spec"]["ports"][0]["port"]}


def test_api_service_points_at_the_api_deployment_and_not_the_webhook() -> None:
    objs = render_set("default")
    svc = _api_service(objs)
    api = one(objs, "Deployment", "-api")
    assert _selects(svc["spec"]["selector"], api["spec"]["template"]["metadata"]["labels"])
    assert not _selects(svc["spec"]["selector"], _webhook_pod(objs)["metadata"]["labels"])
    backends = _backends(objs, svc)
    assert {(c["name"], p) for c, p in backends} == {("api", 8444)}
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve" and "--webhook-only" not in container["args"]
    assert "--port=8444" in container["args"]
    # The API reads only the store; an Ingress may expose it, so it carries no Kubernetes API token.
    pod = api["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert one(objs, "ServiceAccount", "-api")["automountServiceAccountToken"] is False


def test_sqlite_trial_serves_the_api_from_the_single_pod_on_its_own_port() -> None:
    objs = render_set("sqlite-trial-values")
    assert not [d for d in of_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-api")]
    backends = _backends(objs, _api_service(objs))
    assert {(c["name"], p) for c, p in backends} == {("api", 8444)}


def test_ingress_and_service_monitor_use_the_api_service_only() -> None:
    objs = render_set("ha-values")
    api, webhook = _api_service(objs), _webhook_service(objs)
    (ing,) = of_kind(objs, "Ingress")
    names = {p["backend"]["service"]["name"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
    assert names == {api["metadata"]["name"]}
    # The API's /metrics (the webhook process's counters have their own monitor, tested below).
    (sm,) = [m for m in of_kind(objs, "ServiceMonitor")
             if not m["metadata"]["name"].endswith(("-webhook-metrics", "-controllers-metrics"))]
    selector = sm["spec"]["selector"]["matchLabels"]
    assert _selects(selector, api["metadata"]["labels"])
    assert not _selects(selector, webhook["metadata"]["labels"])
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in api["spec"]["ports"]}


# --- client certificates ----------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "source", "key"), [
    (CLIENT_AUTH_CM, "configMap", "ca.crt"),
    (CLIENT_AUTH_SECRET, "secret", "bundle.pem"),
])
def test_client_auth_mounts_the_ca_bundle_and_passes_client_ca(values: dict[str, Any], source: str,
                                                                key: str) -> None:
    pod = _webhook_pod(render(values))
    webhook = _container(pod, "webhook")
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == "client-ca"]
    ref = vol[source]
    assert ref.get("name", ref.get("secretName")) == "apiserver-client-ca"
    assert ref["items"] == [{"key": key, "path": "ca.crt"}]
    (mount,) = [m for m in webhook["volumeMounts"] if m["name"] == "client-ca"]
    assert mount["readOnly"] is True
    (arg,) = [a for a in webhook["args"] if a.startswith("--client-ca=")]
    assert arg == f"--client-ca={mount['mountPath']}/ca.crt"
    # The kubelet has no client certificate: an HTTPS probe would fail the handshake and kill the pod.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert webhook[probe]["tcpSocket"] == {"port": "webhook"} and "httpGet" not in webhook[probe]


def test_without_client_auth_no_ca_is_mounted_or_required() -> None:
    pod = _webhook_pod(render_set("default"))
    webhook = _container(pod, "webhook")
    assert not [a for a in webhook["args"] if a.startswith("--client-ca")]
    assert "client-ca" not in {v["name"] for v in pod["spec"]["volumes"]}


@pytest.mark.parametrize("values", [CLIENT_AUTH_CM, CLIENT_AUTH_SECRET], ids=["configmap", "secret"])
def test_client_auth_renders_valid_objects_and_lints_clean(values: dict[str, Any]) -> None:
    for obj in render(values):
        if obj["kind"] not in {"Certificate", "Issuer", "ServiceMonitor"}:
            kubernetes_validate.validate(obj, "1.30", strict=True)
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert [m for m in report["messages"] if m["severity"] >= 2] + report["errors"] == []


# --- NetworkPolicy ------------------------------------------------------------------------------------

def _policy(objs: Any, suffix: str) -> dict[str, Any]:
    return one(objs, "NetworkPolicy", suffix)


def test_network_policy_admits_only_the_webhook_port_to_webhook_pods_and_the_api_port_to_api_pods() -> None:
    control_plane = [{"ipBlock": {"cidr": "10.0.0.0/28"}}]
    ingress_ns = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    objs = render({"networkPolicy": {"webhookIngressFrom": control_plane, "apiIngressFrom": ingress_ns,
                                     "metricsIngressFrom": prometheus}})
    rule, metrics = _policy(objs, "-webhook")["spec"]["ingress"]
    assert rule == {"ports": [{"port": 8443, "protocol": "TCP"}], "from": control_plane}
    assert metrics == {"ports": [{"port": 9090, "protocol": "TCP"}], "from": prometheus}
    (rule,) = _policy(objs, "-api")["spec"]["ingress"]
    assert rule == {"ports": [{"port": 8444, "protocol": "TCP"}], "from": ingress_ns}
    assert _policy(objs, "-api")["spec"]["podSelector"]["matchLabels"] == \
        one(objs, "Deployment", "-api")["spec"]["selector"]["matchLabels"]
    # The agent still accepts nothing.
    assert _policy(objs, "-agent")["spec"]["ingress"] == []


def test_sqlite_trial_pod_admits_each_port_from_its_own_peers() -> None:
    control_plane = [{"ipBlock": {"cidr": "10.0.0.0/28"}}]
    values = {**ci_values("sqlite-trial-values"), "networkPolicy": {"webhookIngressFrom": control_plane}}
    rules = _policy(render(values), "-webhook")["spec"]["ingress"]
    assert rules == [{"ports": [{"port": 8443, "protocol": "TCP"}], "from": control_plane},
                     {"ports": [{"port": 9090, "protocol": "TCP"}]},
                     {"ports": [{"port": 9091, "protocol": "TCP"}]},  # the controllers' metrics, same pod
                     {"ports": [{"port": 8444, "protocol": "TCP"}]}]


# --- values ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"webhook": {"clientAuth": {"enabled": "yes"}}}, "/webhook/clientAuth/enabled"),
    ({"webhook": {"clientAuth": {"caKey": "../ca.crt"}}}, "/webhook/clientAuth/caKey"),
    ({"webhook": {"clientAuth": {"caSecret": "Bad_Name"}}}, "/webhook/clientAuth/caSecret"),
    ({"webhook": {"clientAuth": {"ca": "x"}}}, "ca"),
    ({"api": {"port": 443}}, "/api/port"),
    ({"api": {"service": {"type": "ExternalName"}}}, "/api/service/type"),
    ({"networkPolicy": {"webhookIngressFrom": ["10.0.0.0/8"]}}, "/networkPolicy/webhookIngressFrom"),
])
def test_schema_rejects_bad_port_and_client_auth_values_naming_the_field(values: dict[str, Any],
                                                                         message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    assert message in str(err.value)


@pytest.mark.parametrize(("values", "message"), [
    ({"webhook": {"clientAuth": {"enabled": True}}},
     "set webhook.clientAuth.caSecret or webhook.clientAuth.caConfigMap"),
    ({"webhook": {"clientAuth": {"enabled": True, "caSecret": "a", "caConfigMap": "b"}}}, "not both"),
    ({"api": {"port": 8443}}, "api.port=8443 equals webhook.port"),
    ({"api": {"enabled": False}, "ingress": {"enabled": True}}, "ingress.enabled routes to the API"),
    ({"api": {"enabled": False}, "webhook": {"metricsPort": 0}, "controllers": {"metricsPort": 0},
      "metrics": {"serviceMonitor": {"enabled": True}}}, "metrics.serviceMonitor.enabled has nothing to scrape"),
])
def test_port_and_client_auth_mistakes_fail_the_render_with_a_fix(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render(values, name="veu", namespace=NAMESPACE)
    assert message in str(err.value)


def test_a_service_monitor_without_the_api_scrapes_the_webhook_and_controllers_metrics() -> None:
    """The webhook's and the controllers' /metrics have Services of their own: they need no API."""
    objs = render({"api": {"enabled": False}, "metrics": {"serviceMonitor": {"enabled": True}}})
    monitors = sorted(m["metadata"]["name"] for m in of_kind(objs, "ServiceMonitor"))
    assert monitors and all(n.endswith(("-webhook-metrics", "-controllers-metrics")) for n in monitors), monitors
    assert any(n.endswith("-webhook-metrics") for n in monitors)


def test_api_disabled_leaves_only_the_webhook_port() -> None:
    objs = render({"api": {"enabled": False}})
    names = [s["metadata"]["name"] for s in of_kind(objs, "Service") if not s["metadata"]["name"].endswith("-metrics")]
    assert names == [_webhook_service(objs)["metadata"]["name"]]
    assert not [d for d in of_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-api")]


# --- the rendered command lines, run ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _localize(container: dict[str, Any], dirs: dict[str, Path], port: int) -> list[str]:
    """The container's args with its mount paths mapped to local directories and a free local port."""
    mounts = {m["mountPath"]: dirs[m["name"]] for m in container["volumeMounts"] if m["name"] in dirs}
    args = []
    for a in container["args"]:
        if a.startswith("--host="):
            a = "--host=127.0.0.1"
        elif a.startswith("--port="):
            a = f"--port={port}"
        elif a.startswith("--metrics-port="):
            a = f"--metrics-port={_free_port()}"  # served as rendered (tests/security/test_webhook_port.py)
        elif "=" in a:
            opt, value = a.split("=", 1)
            for mount_path, local in mounts.items():
                if value.startswith(mount_path + "/"):
                    value = str(local / value[len(mount_path) + 1:])
            assert not value.startswith("/etc/") and not value.startswith("/tls/"), f"{a}: not a mounted file"
            a = f"{opt}={value}"
        args.append(a)
    return args


def _review() -> dict[str, Any]:
    """A CPU-only Pod's review: admitted without touching the red-flag rules (the port is what is tested)."""
    return review({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})


def _wait_up(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"veuctl serve exited: {out[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail("veuctl serve did not listen within 60 s")


@pytest.mark.slow
def test_rendered_webhook_port_answers_only_the_api_server_and_the_api_port_serves_the_api(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.webhook.tlsutil import CA

    objs = render(CLIENT_AUTH_CM)
    tls = one(objs, "Secret", "-tls")
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    for key, data in tls["data"].items():
        (tls_dir / key).write_bytes(base64.b64decode(data))
    # The kube-apiserver's client certificate, from the CA the operator puts in the ConfigMap.
    client_ca = CA()
    ca_dir = tmp_path / "client-ca"
    ca_dir.mkdir()
    client_ca.write_ca(ca_dir / "ca.crt")
    client_cert, client_key = tmp_path / "apiserver.crt", tmp_path / "apiserver.key"
    client_ca.issue(client_cert, client_key, cn="kube-apiserver")
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in one(objs, "ConfigMap", "-policies")["data"].items():
        (policies / name).write_text(text)

    dirs = {"tls": tls_dir, "client-ca": ca_dir}
    # VEU_AUTH as in the pod (the chart sets none, so the product default "token" applies).
    env = {**os.environ, "VEU_DATABASE_URL": db_url, "VEU_POLICY_DIRS": str(policies), "VEU_AUTH": "token"}
    webhook_port, api_port = _free_port(), _free_port()
    webhook_args = _localize(_container(_webhook_pod(objs), "webhook"), dirs, webhook_port)
    api_args = _localize(_container(one(objs, "Deployment", "-api")["spec"]["template"], "api"), dirs, api_port)
    procs = [subprocess.Popen([sys.executable, "-m", "agent", *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for args in (webhook_args, api_args)]
    try:
        _wait_up(procs[0], webhook_port)
        _wait_up(procs[1], api_port)
        server_name = f"{_webhook_service(objs)['metadata']['name']}.{NAMESPACE}.svc"  # the certificate's name
        trust = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        trust.check_hostname = False  # dialled as 127.0.0.1; the chain is still verified against the chart CA
        apiserver = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        apiserver.check_hostname = False
        apiserver.load_cert_chain(str(client_cert), str(client_key))

        with httpx.Client(base_url=f"https://127.0.0.1:{webhook_port}", verify=apiserver, timeout=20) as c:
            r = c.post("/validate", json=_review())
            assert r.status_code == 200 and r.json()["response"]["allowed"] is True
            for path in ("/", "/api/v1/sites", "/api/v1/whoami", "/metrics", "/docs", "/openapi.json"):
                assert c.get(path).status_code == 404, path
        with httpx.Client(base_url=f"https://127.0.0.1:{webhook_port}", verify=trust, timeout=20) as c, \
                pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            c.post("/validate", json=_review())

        with httpx.Client(base_url=f"https://127.0.0.1:{api_port}", verify=trust, timeout=20) as c:
            assert c.get("/healthz").status_code == 200
            assert c.get("/metrics").status_code == 200
            assert c.get("/api/v1/sites").status_code == 401  # the API is here, behind authentication

        # The `helm test` pod's script, with the Service names routed to the two local ports.
        script = one(objs, "Pod", "-test-health")["spec"]["containers"][0]["args"][0]
        script = script.replace("/tls/ca.crt", str(tls_dir / "ca.crt"))
        routes = {server_name: webhook_port,
                  f"{_api_service(objs)['metadata']['name']}.{NAMESPACE}.svc": api_port}
        real = socket.create_connection

        def dial(address: tuple[str, int], *a: Any, **kw: Any) -> socket.socket:
            return real(("127.0.0.1", routes[address[0]]), *a, **kw)

        monkeypatch.setattr(socket, "create_connection", dial)
        exec(compile(script, "test-health", "exec"), {})  # raises if either check fails
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


# --- the webhook process's metrics ---------------------------------------------------------------

def test_webhook_metrics_have_their_own_service_and_are_scraped_over_plain_http() -> None:
    objs = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    metrics = one(objs, "Service", "-webhook-metrics")
    assert [(p["name"], p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [("metrics", 9090, "metrics")]
    assert {(c["name"], port) for c, port in _backends(objs, metrics)} == {("webhook", 9090)}
    # The API server's Service still reaches only the webhook port.
    assert [p["targetPort"] for p in _webhook_service(objs)["spec"]["ports"]] == ["webhook"]
    monitors = {m["metadata"]["name"]: m for m in of_kind(objs, "ServiceMonitor")}
    (wm,) = [m for n, m in monitors.items() if n.endswith("-webhook-metrics")]
    assert wm["spec"]["endpoints"][0]["port"] == "metrics" and wm["spec"]["endpoints"][0]["scheme"] == "http"
    assert _selects(wm["spec"]["selector"]["matchLabels"], metrics["metadata"]["labels"])
    assert not _selects(wm["spec"]["selector"]["matchLabels"], _webhook_service(objs)["metadata"]["labels"])
    policy = one(objs, "NetworkPolicy", "-webhook")
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == [8443, 9090]


def test_webhook_metrics_port_can_be_turned_off_and_must_not_clash() -> None:
    objs = render({"webhook": {"metricsPort": 0}})
    webhook = _container(_webhook_pod(objs), "webhook")
    assert not any(a.startswith("--metrics-port") for a in webhook["args"])
    assert not [o for o in of_kind(objs, "Service") if o["metadata"]["name"].endswith("-webhook-metrics")]
    for clash in (8443, 8444):
        with pytest.raises(Exception, match="metricsPort"):
            render({"webhook": {"metricsPort": clash}})


# --- the controllers process's metrics (pods metered, threshold crossings) ---------------------------------

def test_controllers_metrics_have_their_own_service_monitor_and_network_policy_port() -> None:
    objs = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    ctl = _container(dict(one(objs, "Deployment", "-controllers")["spec"]["template"]), "controllers")
    assert "--metrics-port=9091" in ctl["args"] and ctl["ports"] == [
        {"name": "ctl-metrics", "containerPort": 9091, "protocol": "TCP"}]
    metrics = one(objs, "Service", "-controllers-metrics")
    assert [(p["name"], p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [
        ("metrics", 9091, "ctl-metrics")]
    assert {(c["name"], port) for c, port in _backends(objs, metrics)} == {("controllers", 9091)}
    (cm,) = [m for m in of_kind(objs, "ServiceMonitor") if m["metadata"]["name"].endswith("-controllers-metrics")]
    assert _selects(cm["spec"]["selector"]["matchLabels"], metrics["metadata"]["labels"])
    assert cm["spec"]["endpoints"][0]["port"] == "metrics" and cm["spec"]["endpoints"][0]["scheme"] == "http"
    policy = one(objs, "NetworkPolicy", "-controllers")
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == [9091]


def test_in_the_sqlite_trial_the_controllers_metrics_come_from_the_single_pod() -> None:
    objs = render({"database": {"type": "sqlite"}, "webhook": {"replicas": 1}})
    metrics = one(objs, "Service", "-controllers-metrics")
    assert {(c["name"], port) for c, port in _backends(objs, metrics)} == {("controllers", 9091)}
    policy = one(objs, "NetworkPolicy", "-webhook")
    assert 9091 in [r["ports"][0]["port"] for r in policy["spec"]["ingress"]]


def test_controllers_metrics_port_can_be_turned_off_and_must_not_clash() -> None:
    objs = render({"controllers": {"metricsPort": 0}})
    ctl = _container(dict(one(objs, "Deployment", "-controllers")["spec"]["template"]), "controllers")
    assert not any(a.startswith("--metrics-port") for a in ctl["args"]) and "ports" not in ctl
    assert not [o for o in of_kind(objs, "Service") if o["metadata"]["name"].endswith("-controllers-metrics")]
    assert one(objs, "NetworkPolicy", "-controllers")["spec"]["ingress"] == []
    for clash in (8443, 8444, 9090):
        with pytest.raises(Exception, match=r"controllers\.metricsPort"):
            render({"controllers": {"metricsPort": clash}})


def test_api_container_serves_no_webhook() -> None:
    api = _container(dict(one(render_set("default"), "Deployment", "-api")["spec"]["template"]), "api")
    assert api["args"][:2] == ["serve", "--no-webhook"]
