"""`helm test` proves what it claims and is allowed by the chart's own NetworkPolicies.

Defect 1: with `networkPolicy.webhookIngressFrom` (or `apiIngressFrom`) restricted, e.g. to the control plane's
CIDR, the chart's own NetworkPolicy dropped the test pod's connections, so `helm test` failed on a healthy release.
The policies are evaluated here the way a CNI does (any policy selecting the pod, union of their rules).

Defect 2: with `webhook.clientAuth.enabled` the test pod's webhook check passed on any `OSError`: connection
refused (no pod behind the Service), a timeout (a NetworkPolicy dropping packets), a server presenting some other
certificate. The rendered script is run here against such stand-ins and against the real `veuctl serve
--webhook-only --client-ca` process started from the rendered certificate.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.helm.chart import NAMESPACE, ci_values, of_kind, one, render

CONTROL_PLANE = [{"ipBlock": {"cidr": "10.0.0.0/28"}}]
INGRESS_NS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
RESTRICTED = {"networkPolicy": {"webhookIngressFrom": CONTROL_PLANE, "apiIngressFrom": INGRESS_NS,
                                "metricsIngressFrom": INGRESS_NS}}
_REAL_CONNECT = socket.create_connection
CLIENT_AUTH = {"webhook": {"clientAuth": {"enabled": True, "caConfigMap": "apiserver-client-ca"}}}


# --- NetworkPolicy evaluation (networking.k8s.io/v1 semantics) ----------------------------------------

def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _peer_admits(peer: dict[str, Any], src: dict[str, str], src_ns: str, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        return False  # a pod's address is in no operator-given CIDR we can know of
    ns_labels = {"kubernetes.io/metadata.name": src_ns}
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], ns_labels):
            return False
    elif src_ns != policy_ns:
        return False
    return _matches(peer.get("podSelector") or {}, src)


def allowed(objs: Any, src: dict[str, str], dst: dict[str, str], port: int, src_ns: str = NAMESPACE) -> bool:
    """Whether a pod labelled `src` may open TCP `port` on a pod labelled `dst` (both in the release namespace)."""
    policies = [p for p in of_kind(objs, "NetworkPolicy")
                if "Ingress" in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], dst)]
    if not policies:
        return True
    for p in policies:
        for rule in p["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(pp.get("port") == port and pp.get("protocol", "TCP") == "TCP" for pp in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_admits(peer, src, src_ns, p["metadata"]["namespace"]) for peer in peers):
                return True
    return False


def _test_pod(objs: Any) -> dict[str, Any]:
    return one(objs, "Pod", "-test-health")


def _pod_labels(objs: Any, deployment_suffix: str) -> dict[str, str]:
    return dict(one(objs, "Deployment", deployment_suffix)["spec"]["template"]["metadata"]["labels"])


def _hooks(o: dict[str, Any]) -> str:
    return str((o["metadata"].get("annotations") or {}).get("helm.sh/hook", ""))


@pytest.mark.parametrize("extra", [{}, CLIENT_AUTH], ids=["server-auth", "client-auth"])
def test_test_pod_reaches_the_webhook_and_api_ports_when_their_sources_are_restricted(extra: dict[str, Any]) -> None:
    objs = render({**RESTRICTED, **extra})
    pod = _test_pod(objs)
    src = pod["metadata"]["labels"]
    assert allowed(objs, src, _pod_labels(objs, "-webhook"), 8443), "test pod cannot reach the webhook port"
    assert allowed(objs, src, _pod_labels(objs, "-api"), 8444), "test pod cannot reach the API port"
    # Only the test pod: another pod of the namespace, or one in another namespace wearing its labels, still cannot.
    other = {"app.kubernetes.io/name": "something-else"}
    assert not allowed(objs, other, _pod_labels(objs, "-webhook"), 8443)
    assert not allowed(objs, other, _pod_labels(objs, "-api"), 8444)
    assert not allowed(objs, src, _pod_labels(objs, "-webhook"), 8443, src_ns="tenant-a")
    # Nor any other port of the webhook pods (the metrics port stays Prometheus's).
    assert not allowed(objs, src, _pod_labels(objs, "-webhook"), 9090)
    # The opening exists only while `helm test` runs: an installed release without its test hooks admits no test pod.
    installed = [o for o in objs if not _hooks(o)]
    assert not allowed(installed, src, _pod_labels(objs, "-webhook"), 8443)
    for policy in of_kind(objs, "NetworkPolicy"):
        if _hooks(policy) == "test":
            # created before the pod (lower weight), deleted with it
            ann = policy["metadata"]["annotations"]
            assert int(ann["helm.sh/hook-weight"]) < int(pod["metadata"]["annotations"].get("helm.sh/hook-weight", 0))
            assert "hook-succeeded" in ann["helm.sh/hook-delete-policy"]


def test_test_pod_reaches_both_ports_of_the_sqlite_trial_pod_when_restricted() -> None:
    objs = render({**ci_values("sqlite-trial-values"), **RESTRICTED})
    src = _test_pod(objs)["metadata"]["labels"]
    pod = _pod_labels(objs, "-webhook")
    assert allowed(objs, src, pod, 8443) and allowed(objs, src, pod, 8444)


def test_no_test_access_policy_without_network_policies() -> None:
    objs = render({"networkPolicy": {"enabled": False}})
    assert of_kind(objs, "NetworkPolicy") == []
    assert _test_pod(objs)


# --- the test pod's script, run --------------------------------------------------------------------

def _tls_files(objs: Any, tmp_path: Path) -> Path:
    d = tmp_path / "tls"
    d.mkdir()
    for key, data in one(objs, "Secret", "-tls")["data"].items():
        (d / key).write_bytes(base64.b64decode(data))
    return d


def _run_script(objs: Any, tls_dir: Path, routes: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Exec the test pod's script with each Service name dialled on a local port."""
    script = _test_pod(objs)["spec"]["containers"][0]["args"][0].replace("/tls/ca.crt", str(tls_dir / "ca.crt"))
    def dial(address: tuple[str, int], *a: Any, **kw: Any) -> socket.socket:
        return _REAL_CONNECT(("127.0.0.1", routes[address[0]]), *a, **kw)

    monkeypatch.setattr(socket, "create_connection", dial)
    monkeypatch.setattr(time, "sleep", lambda _s: None)  # the script's retry pauses
    exec(compile(script, "test-health", "exec"), {})


def _webhook_name(objs: Any) -> str:
    return f"{one(objs, 'Service', '-governor')['metadata']['name']}.{NAMESPACE}.svc"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Listener:
    """A local TCP server whose connections `handle` serves (each in a thread)."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.handle = handle
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture()
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], _Listener]]:
    made: list[_Listener] = []

    def make(handle: Callable[[socket.socket], None]) -> _Listener:
        made.append(_Listener(handle))
        return made[-1]

    yield make
    for m in made:
        m.close()


def _tls_server(cert: Path, key: Path, answer: bytes | None) -> Callable[[socket.socket], None]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))

    def handle(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1024)
                if answer is not None:
                    tls.sendall(answer)
                else:
                    threading.Event().wait(30)  # not time.sleep: the script's pauses are patched away
        except OSError:
            pass

    return handle


def test_client_auth_check_fails_when_no_webhook_listens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render({**CLIENT_AUTH, "api": {"enabled": False}})
    tls_dir = _tls_files(objs, tmp_path)
    with pytest.raises(SystemExit) as err:
        _run_script(objs, tls_dir, {_webhook_name(objs): _closed_port()}, monkeypatch)
    assert "cannot connect" in str(err.value)


def test_client_auth_check_fails_when_the_peer_speaks_no_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            listener: Any) -> None:
    objs = render({**CLIENT_AUTH, "api": {"enabled": False}})
    tls_dir = _tls_files(objs, tmp_path)
    server = listener(lambda conn: conn.close())  # accepts and hangs up: not the webhook
    with pytest.raises(SystemExit) as err:
        _run_script(objs, tls_dir, {_webhook_name(objs): server.port}, monkeypatch)
    assert "TLS handshake" in str(err.value)


def test_client_auth_check_fails_on_another_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       listener: Any) -> None:
    from tests.webhook.tlsutil import CA

    objs = render({**CLIENT_AUTH, "api": {"enabled": False}})
    tls_dir = _tls_files(objs, tmp_path)
    stranger = CA()
    stranger.issue(tmp_path / "s.crt", tmp_path / "s.key")
    server = listener(_tls_server(tmp_path / "s.crt", tmp_path / "s.key", None))
    with pytest.raises(SystemExit) as err:
        _run_script(objs, tls_dir, {_webhook_name(objs): server.port}, monkeypatch)
    assert "TLS handshake" in str(err.value)


def test_client_auth_check_fails_when_the_webhook_answers_without_a_client_certificate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: Any) -> None:
    objs = render({**CLIENT_AUTH, "api": {"enabled": False}})
    tls_dir = _tls_files(objs, tmp_path)
    server = listener(_tls_server(tls_dir / "tls.crt", tls_dir / "tls.key",
                                  b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
    with pytest.raises(SystemExit) as err:
        _run_script(objs, tls_dir, {_webhook_name(objs): server.port}, monkeypatch)
    assert "clientAuth" in str(err.value)


def test_client_auth_check_fails_when_the_webhook_neither_answers_nor_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: Any) -> None:
    objs = render({**CLIENT_AUTH, "api": {"enabled": False}})
    tls_dir = _tls_files(objs, tmp_path)
    server = listener(_tls_server(tls_dir / "tls.crt", tls_dir / "tls.key", None))  # handshakes, then hangs
    with pytest.raises(SystemExit) as err:
        _run_script(objs, tls_dir, {_webhook_name(objs): server.port}, monkeypatch)
    assert "neither" in str(err.value)


def _serve(config: uvicorn.Config) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    return server, thread


def test_client_auth_check_passes_against_the_real_webhook_and_api(tmp_path: Path, db_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.server import build_config
    from tests.webhook.tlsutil import CA, free_port

    objs = render(CLIENT_AUTH)
    tls_dir = _tls_files(objs, tmp_path)
    client_ca = CA().write_ca(tmp_path / "client-ca.crt")
    cert, key = str(tls_dir / "tls.crt"), str(tls_dir / "tls.key")
    webhook_port, api_port = free_port(), free_port()
    servers = [_serve(build_config("127.0.0.1", webhook_port, cert, key, db_url, "warning", webhook_only=True,
                                   client_ca=str(client_ca))),
               _serve(build_config("127.0.0.1", api_port, cert, key, db_url, "warning", webhook=False))]
    try:
        api_name = f"{one(objs, 'Service', '-api')['metadata']['name']}.{NAMESPACE}.svc"
        _run_script(objs, tls_dir, {_webhook_name(objs): webhook_port, api_name: api_port}, monkeypatch)
        # And the same script without clientAuth, against a webhook that does not require it, passes too.
        plain = render({})
        webhook_plain = free_port()
        servers.append(_serve(build_config("127.0.0.1", webhook_plain, cert, key, db_url, "warning",
                                           webhook_only=True)))
        _run_script(plain, tls_dir, {_webhook_name(plain): webhook_plain, api_name: api_port}, monkeypatch)
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)


# --- the test pod runs where the release's pods run ------------------------------------------------

def test_test_pod_pulls_the_image_with_the_release_pull_secrets() -> None:
    """A private registry: every other pod got `imagePullSecrets`, the test pod none (ImagePullBackOff)."""
    objs = render({"imagePullSecrets": [{"name": "regcred"}]})
    assert _test_pod(objs)["spec"].get("imagePullSecrets") == [{"name": "regcred"}]
    assert "imagePullSecrets" not in _test_pod(render({}))["spec"]


@pytest.mark.parametrize(("minimum", "replicas"), [("100%", 3), ("67%", 3), ("51%", 2)])
def test_a_percentage_pdb_that_keeps_every_webhook_replica_fails_the_render(minimum: str, replicas: int) -> None:
    """minAvailable rounds a percentage up (policy/v1): 67% of 3 is 3, so no node could ever be drained."""
    import helm_python as helm

    from tests.helm.chart import CHART

    values = {"webhook": {"replicas": replicas, "pdb": {"minAvailable": minimum}}}
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render(values, name="veu", namespace=NAMESPACE)
    assert "webhook.pdb.minAvailable" in str(err.value) and "drain" in str(err.value)
    render({"webhook": {"replicas": 3, "pdb": {"minAvailable": "66%"}}})  # 66% of 3 rounds up to 2: fine
