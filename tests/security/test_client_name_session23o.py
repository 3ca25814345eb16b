"""``veuctl serve --client-name``: only the API server's own client certificate may post reviews (session 23).

``--client-ca`` admitted every certificate its CA signed. Operators point it at the cluster CA (kubeadm's
``pki/ca.crt``), which also signs every kubelet's client certificate (CN ``system:node:<name>``) and many users':
each of them could post AdmissionReviews, forging decisions, filling the audit trail and probing customers'
status. With ``--client-name`` a certificate is accepted only if its Subject CN or a DNS/URI SAN is one of the
names (the one the operator gave the API server's webhook client certificate in its AdmissionConfiguration
kubeConfigFile); any other is dropped right after the handshake, before a request is read, and the log names the
CN it presented. Everything here is real HTTPS against uvicorn serving the webhook-only app.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.server import CertReloader, build_config
from tests.security.test_serve_options import _serve
from tests.webhook.conftest import review
from tests.webhook.tlsutil import CA, free_port

API_SERVER = "kube-apiserver-webhook-client"
REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)


def _review() -> dict[str, object]:
    """A CPU-only Pod's review: admitted without touching the red-flag rules (who may call is what is tested)."""
    return review({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})


def _client(ca: CA, directory: Path, cn: str, sans: Sequence[x509.GeneralName] = ()) -> tuple[str, str]:
    """A client certificate signed by ``ca`` with exactly this CN and these SANs (tlsutil's adds localhost)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    stem = directory / f"client-{x509.random_serial_number()}"
    cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class Webhook:
    """``veuctl serve --webhook-only --client-ca CA [--client-name ...]`` in a thread, with its CA reloader."""

    def __init__(self, tmp_path: Path, db_url: str, names: Sequence[str]) -> None:
        self.tmp = tmp_path
        self.serving, self.cluster_ca = CA(), CA("kubernetes")
        self.cert, self.key = tmp_path / "tls.crt", tmp_path / "tls.key"
        self.serving.issue(self.cert, self.key)
        self.serving_ca = self.serving.write_ca(tmp_path / "serving-ca.crt")
        self.client_ca = self.cluster_ca.write_ca(tmp_path / "client-ca.crt")
        self.port = free_port()
        config = build_config("127.0.0.1", self.port, str(self.cert), str(self.key), db_url, "warning",
                              webhook_only=True, client_ca=str(self.client_ca), client_names=names)
        assert config.ssl is not None
        self.server = uvicorn.Server(config)
        self.reloader = CertReloader(config.ssl, str(self.cert), str(self.key), 0.05,
                                     client_ca=str(self.client_ca))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Webhook:
        self.thread.start()
        self.reloader.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.reloader.stop()
        self.server.should_exit = True
        self.thread.join(10)

    def cert_for(self, cn: str, sans: Sequence[x509.GeneralName] = (), ca: CA | None = None) -> tuple[str, str]:
        return _client(ca or self.cluster_ca, self.tmp, cn, sans)

    def post(self, client: tuple[str, str]) -> httpx.Response:
        ctx = ssl.create_default_context(cafile=str(self.serving_ca))
        ctx.load_cert_chain(*client)
        with httpx.Client(base_url=f"https://127.0.0.1:{self.port}", verify=ctx, timeout=10) as c:
            return c.post("/validate", json=_review())

    def admitted(self, client: tuple[str, str]) -> bool:
        try:
            r = self.post(client)
        except REFUSED:
            return False
        assert r.status_code == 200 and r.json()["response"]["allowed"] is True, r.text
        return True


@pytest.fixture()
def pinned(tmp_path: Path, db_url: str) -> Iterator[Webhook]:
    hook = Webhook(tmp_path, db_url, [API_SERVER, "system:kube-apiserver"]).start()
    try:
        yield hook
    finally:
        hook.stop()


def test_the_api_servers_client_certificate_by_its_cn_gets_a_review(pinned: Webhook) -> None:
    assert pinned.admitted(pinned.cert_for(API_SERVER))
    assert pinned.admitted(pinned.cert_for("system:kube-apiserver"))  # every name given counts


def test_a_kubelets_certificate_from_the_same_cluster_ca_is_dropped_and_logged_by_its_cn(
        pinned: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="veu.server"):
        assert not pinned.admitted(pinned.cert_for("system:node:gpu-node-7"))
        assert not pinned.admitted(pinned.cert_for("jane@example.com", [x509.DNSName("jane.example.com")]))
    refused = [r.getMessage() for r in caplog.records if r.name == "veu.server"]
    assert any("'system:node:gpu-node-7'" in m and "--client-name" in m for m in refused), refused
    assert any("'jane@example.com'" in m for m in refused), refused
    assert not any("BEGIN CERTIFICATE" in m for m in refused)  # the name, not the whole certificate


def test_a_name_must_be_equal_not_a_prefix_or_another_case(pinned: Webhook) -> None:
    assert not pinned.admitted(pinned.cert_for(API_SERVER + "-2"))
    assert not pinned.admitted(pinned.cert_for(API_SERVER.upper()))
    assert not pinned.admitted(pinned.cert_for("kube-apiserver"))


def test_a_dropped_certificate_is_closed_before_any_request_is_read(pinned: Webhook) -> None:
    """The connection is closed right after the handshake: the client need not send a byte (the head timeout,
    10 s, would otherwise hold it open), and whatever it sends is never answered."""
    ctx = ssl.create_default_context(cafile=str(pinned.serving_ca))
    ctx.load_cert_chain(*pinned.cert_for("system:node:gpu-node-7"))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", pinned.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        try:
            got = tls.recv(1024)
        except (ssl.SSLError, ConnectionError):
            got = b""
    assert got == b"" and time.monotonic() - started < 3


@pytest.mark.parametrize("san", [
    x509.DNSName("kube-apiserver.kube-system.svc"),
    x509.UniformResourceIdentifier("spiffe://cluster.local/ns/kube-system/sa/kube-apiserver"),
], ids=["dns", "uri"])
def test_a_subject_alternative_name_matches_too(tmp_path: Path, db_url: str, san: x509.GeneralName) -> None:
    hook = Webhook(tmp_path, db_url, [str(san.value)]).start()
    try:
        assert hook.admitted(hook.cert_for("whatever-the-cn", [san]))
        assert not hook.admitted(hook.cert_for(str(san.value) + ".evil", [x509.DNSName("other.example")]))
    finally:
        hook.stop()


def test_without_client_name_any_certificate_of_the_ca_still_gets_in(tmp_path: Path, db_url: str) -> None:
    """Unchanged without the option (the residual risk docs/security.md names)."""
    hook = Webhook(tmp_path, db_url, []).start()
    try:
        assert hook.admitted(hook.cert_for("system:node:gpu-node-7"))
    finally:
        hook.stop()


def test_a_reloaded_client_ca_keeps_the_names_pinned(pinned: Webhook) -> None:
    new_ca = CA("kubernetes-2026")
    assert not pinned.admitted(pinned.cert_for(API_SERVER, ca=new_ca))
    pinned.client_ca.write_bytes(new_ca.cert.public_bytes(serialization.Encoding.PEM))
    st = pinned.client_ca.stat()
    os.utime(pinned.client_ca, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    deadline = time.monotonic() + 10
    while pinned.reloader.reloads == 0:
        assert time.monotonic() < deadline, "the client CA was not reloaded"
        time.sleep(0.05)
    assert pinned.admitted(pinned.cert_for(API_SERVER, ca=new_ca))
    assert not pinned.admitted(pinned.cert_for("system:node:gpu-node-7", ca=new_ca))
    assert not pinned.admitted(pinned.cert_for(API_SERVER))  # the retired CA


@pytest.mark.parametrize(("args", "expected"), [
    (["--client-name", ""], "error: --client-name: "),
    (["--client-name", "   "], "error: --client-name: "),
    (["--client-name", " kube-apiserver"], "error: --client-name: "),
    (["--client-name", API_SERVER], "error: --client-name: requires --client-ca"),
])
def test_a_bad_client_name_is_one_line_naming_the_option(tmp_path: Path, args: list[str], expected: str) -> None:
    pki: dict[str, Any] = {}
    if args[1] != API_SERVER:  # a blank name is refused even with everything else right
        ca = CA()
        ca.issue(tmp_path / "tls.crt", tmp_path / "tls.key")
        ca.write_ca(tmp_path / "ca.crt")
        pki = {"--tls-cert": "tls.crt", "--tls-key": "tls.key", "--client-ca": "ca.crt"}
    r, db = _serve(tmp_path, *[x for kv in pki.items() for x in kv], *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(expected) and r.stderr.count("\n") == 1, r.stderr
    assert not db.exists()


def test_veuctl_serve_passes_client_name_to_the_server(tmp_path: Path) -> None:
    """The CLI itself, as the chart runs it: a refused certificate, then the API server's."""
    import subprocess
    import sys

    serving, cluster = CA(), CA("kubernetes")
    serving.issue(tmp_path / "tls.crt", tmp_path / "tls.key")
    serving.write_ca(tmp_path / "serving-ca.crt")
    cluster.write_ca(tmp_path / "ca.crt")
    port = free_port()
    env = {**os.environ, "VEU_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--webhook-only", "--host", "127.0.0.1",
                             "--port", str(port), "--tls-cert", "tls.crt", "--tls-key", "tls.key",
                             "--client-ca", "ca.crt", "--client-name", API_SERVER, "--log-level", "warning"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "veuctl serve did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        hook = Webhook.__new__(Webhook)
        hook.port, hook.serving_ca = port, tmp_path / "serving-ca.crt"
        assert hook.admitted(_client(cluster, tmp_path, API_SERVER))
        assert not hook.admitted(_client(cluster, tmp_path, "system:node:gpu-node-7"))
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert b"system:node:gpu-node-7" in out
