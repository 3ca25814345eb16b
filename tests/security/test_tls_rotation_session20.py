"""The serving certificate under rotation, TLS versions and client-certificate auth with a wrong CA.

A rotator writes the certificate and the key one after the other. Loading a new certificate whose key has not been
written yet into the live context replaced the certificate and dropped its key (OpenSSL clears a key that does not
match the new certificate), so every new handshake failed ("no shared cipher") until the key arrived, and forever
with a wrong key, while the log said the previous pair was kept.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.server import CertReloader, build_config
from tests.webhook.tlsutil import CA, ServerThread


def _serve_once(ctx: ssl.SSLContext) -> tuple[int, threading.Thread]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = int(srv.getsockname()[1])

    def run() -> None:
        conn, _ = srv.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
        finally:
            srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return port, t


def _presented(ctx: ssl.SSLContext, ca_path: Path, client_cert: tuple[Path, Path] | None = None) -> x509.Certificate:
    """The certificate ``ctx`` presents in a real handshake (raises ssl.SSLError when the handshake fails)."""
    port, t = _serve_once(ctx)
    cctx = ssl.create_default_context(cafile=str(ca_path))
    if client_cert:
        cctx.load_cert_chain(*map(str, client_cert))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                cctx.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            tls.sendall(b"x")
            tls.recv(1)  # TLS 1.3: a refused client certificate surfaces on the first read
            return x509.load_der_x509_certificate(der)
    finally:
        t.join(5)


@pytest.fixture()
def pki(tmp_path: Path) -> tuple[CA, Path, Path, Path]:
    ca = CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert, key, cn="first")
    return ca, ca.write_ca(tmp_path / "ca.crt"), cert, key


def _live(cert: Path, key: Path) -> tuple[ssl.SSLContext, CertReloader]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx, CertReloader(ctx, str(cert), str(key), interval=60)


def _cn(c: x509.Certificate) -> str:
    return str(c.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value)


def test_new_certificate_before_its_key_keeps_serving_the_previous_pair(
        pki: tuple[CA, Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca, ca_path, cert, key = pki
    ctx, reloader = _live(cert, key)
    new_cert, new_key = tmp_path / "next.crt", tmp_path / "next.key"
    ca.issue(new_cert, new_key, cn="second")
    cert.write_bytes(new_cert.read_bytes())  # the rotator has written the certificate, not yet the key
    with caplog.at_level(logging.WARNING, logger="veu.server"):
        assert reloader.check() is False
    assert "keeping the previous one" in caplog.text and str(cert) in caplog.text
    assert _cn(_presented(ctx, ca_path)) == "first"  # not a failed handshake
    key.write_bytes(new_key.read_bytes())
    assert reloader.check() is True
    assert _cn(_presented(ctx, ca_path)) == "second"


@pytest.mark.parametrize("bad_key", [b"", b"-----BEGIN PRIVATE KEY-----\ngarbage\n", b"not a key"],
                         ids=["empty", "truncated", "garbage"])
def test_unreadable_key_after_rotation_keeps_the_previous_pair(
        pki: tuple[CA, Path, Path, Path], tmp_path: Path, bad_key: bytes) -> None:
    ca, ca_path, cert, key = pki
    ctx, reloader = _live(cert, key)
    ca.issue(tmp_path / "next.crt", tmp_path / "next.key", cn="second")
    cert.write_bytes((tmp_path / "next.crt").read_bytes())
    key.write_bytes(bad_key)
    assert reloader.check() is False
    assert _cn(_presented(ctx, ca_path)) == "first"
    # A retry on the next poll picks the pair up once it is whole.
    key.write_bytes((tmp_path / "next.key").read_bytes())
    assert reloader.check() is True
    assert _cn(_presented(ctx, ca_path)) == "second"


def test_key_of_another_certificate_keeps_the_previous_pair(pki: tuple[CA, Path, Path, Path], tmp_path: Path) -> None:
    ca, ca_path, cert, key = pki
    ctx, reloader = _live(cert, key)
    ca.issue(tmp_path / "a.crt", tmp_path / "a.key", cn="second")
    ca.issue(tmp_path / "b.crt", tmp_path / "b.key", cn="third")
    cert.write_bytes((tmp_path / "a.crt").read_bytes())
    key.write_bytes((tmp_path / "b.key").read_bytes())
    assert reloader.check() is False
    assert _cn(_presented(ctx, ca_path)) == "first"


def test_open_connection_finishes_after_rotation_and_new_ones_get_the_new_certificate(
        pki: tuple[CA, Path, Path, Path], db_url: str) -> None:
    ca, ca_path, cert, key = pki
    verify = ssl.create_default_context(cafile=str(ca_path))
    with ServerThread(cert, key, db_url, reload_interval=0.05, webhook_only=True) as server, \
            httpx.Client(base_url=server.url, verify=verify, timeout=20) as old:
        assert old.get("/healthz").text == "ok"  # a kept-alive connection with the first certificate
        time.sleep(0.05)
        ca.issue(cert, key, cn="second")
        deadline = time.monotonic() + 10
        while server.reloader.reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.reloader.reloads == 1
        assert old.get("/healthz").text == "ok"
        assert server.config.ssl is not None
        assert _cn(_presented(server.config.ssl, ca_path)) == "second"


def test_serving_context_refuses_tls_below_1_2(pki: tuple[CA, Path, Path, Path], db_url: str) -> None:
    _, _, cert, key = pki
    config = build_config("127.0.0.1", 1, str(cert), str(key), db_url, log_level="warning", webhook_only=True)
    assert config.ssl is not None
    assert config.ssl.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_client_certificate_from_another_ca_is_refused(pki: tuple[CA, Path, Path, Path], tmp_path: Path,
                                                       db_url: str) -> None:
    _ca, ca_path, cert, key = pki
    api_server_ca, stranger_ca = CA(), CA()
    client_ca = api_server_ca.write_ca(tmp_path / "client-ca.crt")
    config = build_config("127.0.0.1", 1, str(cert), str(key), db_url, log_level="warning", webhook_only=True,
                          client_ca=str(client_ca))
    assert config.ssl is not None
    good = (tmp_path / "apiserver.crt", tmp_path / "apiserver.key")
    api_server_ca.issue(*good, cn="kube-apiserver")
    assert _cn(_presented(config.ssl, ca_path, good)) == "first"
    bad = (tmp_path / "stranger.crt", tmp_path / "stranger.key")
    stranger_ca.issue(*bad, cn="kube-apiserver")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _presented(config.ssl, ca_path, bad)


def test_key_file_is_not_left_behind_by_a_reload(pki: tuple[CA, Path, Path, Path], tmp_path: Path) -> None:
    """The reload reads the pair once (so certificate and key are of one moment); no copy of the key stays."""
    import tempfile

    ca, _ca_path, cert, key = pki
    _ctx, reloader = _live(cert, key)
    before = set(Path(tempfile.gettempdir()).iterdir())
    ca.issue(cert, key, cn="second")
    assert reloader.check() is True
    pem = key.read_bytes()
    leftover = [p for p in set(Path(tempfile.gettempdir()).iterdir()) - before
                if p.is_file() and pem.strip() in p.read_bytes()]
    assert leftover == []
    assert serialization.load_pem_private_key(pem, None)
