"""The client CA of ``--client-ca`` is reloaded when its file changes, like the serving certificate (session 22).

It was read at start only. The API server's client CA is rotated by replacing the mounted bundle (first the old
and new CA together, then the new alone); a webhook that kept the CA it started with refused the API server's new
client certificate at every handshake, and with ``failurePolicy: Fail`` every job creation in the cluster failed
until someone restarted it. A bundle that does not load keeps the previous CA, logged and retried.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import agent.server as server_mod
from agent.server import CertReloader, build_config
from tests.security.test_tls_rotation_session20 import _cn, _presented
from tests.webhook.tlsutil import CA


@pytest.fixture()
def pki(tmp_path: Path) -> dict[str, Any]:
    # distinct names: without key identifiers OpenSSL finds an issuer in a bundle by its name
    serving, old, new = CA(), CA("apiserver-client-ca-2025"), CA("apiserver-client-ca-2026")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    serving.issue(cert, key, cn="first")
    old_client = (tmp_path / "old-client.crt", tmp_path / "old-client.key")
    new_client = (tmp_path / "new-client.crt", tmp_path / "new-client.key")
    old.issue(*old_client, cn="kube-apiserver")
    new.issue(*new_client, cn="kube-apiserver")
    return {"serving": serving, "serving_ca": serving.write_ca(tmp_path / "serving-ca.crt"), "cert": cert,
            "key": key, "client_ca": old.write_ca(tmp_path / "client-ca.crt"),
            "old_ca_pem": old.write_ca(tmp_path / "old.pem"), "new_ca_pem": new.write_ca(tmp_path / "new.pem"),
            "old_client": old_client, "new_client": new_client}


def _accepted(ctx: ssl.SSLContext, p: dict[str, Any], which: str) -> bool:
    try:
        _presented(ctx, p["serving_ca"], p[which])
        return True
    except (ssl.SSLError, ConnectionError):
        return False


def _setup(p: dict[str, Any], db_url: str) -> tuple[ssl.SSLContext, CertReloader]:
    config = build_config("127.0.0.1", 1, str(p["cert"]), str(p["key"]), db_url, log_level="warning",
                          webhook_only=True, client_ca=str(p["client_ca"]))
    assert config.ssl is not None
    return config.ssl, CertReloader(config.ssl, str(p["cert"]), str(p["key"]), interval=60,
                                    client_ca=str(p["client_ca"]))


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    # a rewrite within the same second and of the same size must still be seen
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_replaced_client_ca_is_trusted_and_the_old_one_no_longer(pki: dict[str, Any], db_url: str) -> None:
    ctx, reloader = _setup(pki, db_url)
    assert _accepted(ctx, pki, "old_client") and not _accepted(ctx, pki, "new_client")
    # overlap: both CAs in the bundle
    _write(pki["client_ca"], pki["old_ca_pem"].read_bytes() + pki["new_ca_pem"].read_bytes())
    assert reloader.check() is True
    assert _accepted(ctx, pki, "old_client") and _accepted(ctx, pki, "new_client")
    # the old CA retired
    _write(pki["client_ca"], pki["new_ca_pem"].read_bytes())
    assert reloader.check() is True
    assert _accepted(ctx, pki, "new_client") and not _accepted(ctx, pki, "old_client")


def test_a_client_ca_that_does_not_load_keeps_the_previous_one(pki: dict[str, Any], db_url: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    ctx, reloader = _setup(pki, db_url)
    for garbage in (b"", b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", b"\x00" * 40):
        _write(pki["client_ca"], garbage)
        with caplog.at_level(logging.WARNING, logger="veu.server"):
            assert reloader.check() is False
        assert str(pki["client_ca"]) in caplog.text
        assert _accepted(ctx, pki, "old_client") and not _accepted(ctx, pki, "new_client")
    _write(pki["client_ca"], pki["new_ca_pem"].read_bytes())
    assert reloader.check() is True
    assert _accepted(ctx, pki, "new_client") and not _accepted(ctx, pki, "old_client")


def test_a_rotated_serving_certificate_keeps_the_client_check(pki: dict[str, Any], db_url: str) -> None:
    ctx, reloader = _setup(pki, db_url)
    pki["serving"].issue(pki["cert"], pki["key"], cn="second")
    assert reloader.check() is True
    assert _cn(_presented(ctx, pki["serving_ca"], pki["old_client"])) == "second"
    assert not _accepted(ctx, pki, "new_client")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _presented(ctx, pki["serving_ca"], None)  # no client certificate at all


def test_the_running_webhook_takes_the_new_client_ca_without_a_restart(pki: dict[str, Any], db_url: str) -> None:
    """uvicorn's own TLS (asyncio SSL objects) over a real review: the API server's new certificate gets in."""
    from tests.webhook.tlsutil import free_port

    port = free_port()
    config = build_config("127.0.0.1", port, str(pki["cert"]), str(pki["key"]), db_url, log_level="warning",
                          webhook_only=True, client_ca=str(pki["client_ca"]))
    assert config.ssl is not None
    server = uvicorn.Server(config)
    reloader = CertReloader(config.ssl, str(pki["cert"]), str(pki["key"]), 0.05, client_ca=str(pki["client_ca"]))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    reloader.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.02)

        def healthz(client: tuple[Path, Path]) -> int:
            ctx = ssl.create_default_context(cafile=str(pki["serving_ca"]))
            ctx.load_cert_chain(*map(str, client))
            with httpx.Client(verify=ctx) as c:
                return c.get(f"https://127.0.0.1:{port}/healthz").status_code

        assert healthz(pki["old_client"]) == 200
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            healthz(pki["new_client"])
        _write(pki["client_ca"], pki["new_ca_pem"].read_bytes())
        deadline = time.monotonic() + 10
        while reloader.reloads == 0:
            assert time.monotonic() < deadline, "the client CA was not reloaded"
            time.sleep(0.05)
        assert healthz(pki["new_client"]) == 200
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            healthz(pki["old_client"])
    finally:
        reloader.stop()
        server.should_exit = True
        t.join(10)


def test_run_server_watches_the_client_ca(pki: dict[str, Any], db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[CertReloader] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)

    def start(self: CertReloader) -> CertReloader:
        started.append(self)
        return self

    monkeypatch.setattr(CertReloader, "start", start)
    server_mod.run_server("127.0.0.1", 1, str(pki["cert"]), str(pki["key"]), db_url, webhook_only=True,
                          client_ca=str(pki["client_ca"]))
    assert [r.client_ca for r in started] == [str(pki["client_ca"])]


def test_a_session_resumed_after_the_ca_is_retired_is_refused(pki: dict[str, Any], db_url: str) -> None:
    """A resumed session skips the client-certificate check: none is offered, so the retired CA's client cannot
    resume (OpenSSL would have let it back in for two hours)."""
    import socket

    ctx, reloader = _setup(pki, db_url)
    from tests.security.test_tls_rotation_session20 import _serve_once

    cctx = ssl.create_default_context(cafile=str(pki["serving_ca"]))
    cctx.load_cert_chain(*map(str, pki["old_client"]))
    port, t = _serve_once(ctx)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            cctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"x")
        tls.recv(1)  # TLS 1.3: the session ticket arrives after the handshake
        session = tls.session
    t.join(5)
    _write(pki["client_ca"], pki["new_ca_pem"].read_bytes())
    assert reloader.check() is True
    port, t = _serve_once(ctx)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)), \
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                cctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            assert not tls.session_reused
            tls.sendall(b"x")
            tls.recv(1)
    finally:
        t.join(5)


def test_tls_1_2_is_refused_where_client_certificates_are_checked(pki: dict[str, Any], db_url: str) -> None:
    ctx, _ = _setup(pki, db_url)
    from tests.security.test_tls_rotation_session20 import _serve_once

    cctx = ssl.create_default_context(cafile=str(pki["serving_ca"]))
    cctx.load_cert_chain(*map(str, pki["old_client"]))
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2
    import socket

    port, t = _serve_once(ctx)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)), \
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                cctx.wrap_socket(raw, server_hostname="localhost"):
            pass
    finally:
        t.join(5)


def test_a_bundle_with_text_around_the_certificates_reloads(pki: dict[str, Any], db_url: str) -> None:
    """As at start (check_options): a bundle's comments, in any script, are not part of a certificate."""
    ctx, reloader = _setup(pki, db_url)
    _write(pki["client_ca"], "# Issuer: CN=Zürich Root, 東京\n".encode() + pki["new_ca_pem"].read_bytes())
    assert reloader.check() is True
    assert _accepted(ctx, pki, "new_client") and not _accepted(ctx, pki, "old_client")


def test_a_ca_that_does_not_load_does_not_hold_back_a_new_serving_pair(pki: dict[str, Any], db_url: str) -> None:
    ctx, reloader = _setup(pki, db_url)
    _write(pki["client_ca"], b"garbage")
    pki["serving"].issue(pki["cert"], pki["key"], cn="second")
    assert reloader.check() is True  # the pair
    assert _cn(_presented(ctx, pki["serving_ca"], pki["old_client"])) == "second"  # the previous CA still trusted
    assert not _accepted(ctx, pki, "new_client")
    assert reloader.check() is False  # the CA is retried, nothing new
    _write(pki["client_ca"], pki["new_ca_pem"].read_bytes())
    assert reloader.check() is True
    assert _accepted(ctx, pki, "new_client") and not _accepted(ctx, pki, "old_client")
    assert _cn(_presented(ctx, pki["serving_ca"], pki["new_client"])) == "second"
