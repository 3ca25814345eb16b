"""The webhook port accepts only the API server (client certificate) and exposes nothing but /validate."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from agent.server import build_config
from tests.webhook.conftest import review
from tests.webhook.tlsutil import CA, free_port


def _review() -> dict[str, object]:
    """A CPU-only Pod's review: admitted without touching the red-flag rules (the port is what is tested)."""
    return review({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})


@pytest.fixture()
def webhook_only(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    ca = CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert, key)
    ca_file = ca.write_ca(tmp_path / "ca.crt")
    client_cert, client_key = tmp_path / "client.crt", tmp_path / "client.key"
    ca.issue(client_cert, client_key, cn="kube-apiserver")
    port = free_port()
    config = build_config("127.0.0.1", port, str(cert), str(key), db_url, "warning", webhook_only=True,
                          client_ca=str(ca_file))
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"https://127.0.0.1:{port}", ca_file, (str(client_cert), str(client_key))
    server.should_exit = True
    t.join(10)


def test_api_server_with_client_certificate_gets_a_review(webhook_only) -> None:  # type: ignore[no-untyped-def]
    url, ca_file, client = webhook_only
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.load_cert_chain(*client)
    with httpx.Client(base_url=url, verify=ctx, timeout=20) as c:
        r = c.post("/validate", json=_review())
        assert r.status_code == 200 and r.json()["response"]["allowed"] is True
        for path in ("/api/v1/whoami", "/", "/openapi.json", "/docs", "/api/v1/cases"):
            assert c.get(path).status_code == 404, path


def test_caller_without_client_certificate_is_refused_at_tls(webhook_only) -> None:  # type: ignore[no-untyped-def]
    url, ca_file, _ = webhook_only
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(ca_file)), timeout=20) as c, \
            pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        c.post("/validate", json=_review())


def test_client_ca_without_tls_is_a_clear_error(tmp_path: Path) -> None:
    from policies.errors import PolicyError

    (tmp_path / "ca.crt").write_text("x")
    with pytest.raises(PolicyError, match="--client-ca: requires --tls-cert"):
        build_config("127.0.0.1", 1, None, None, None, webhook_only=True, client_ca=str(tmp_path / "ca.crt"))


def test_api_port_without_the_webhook_does_not_accept_admission_reviews(db_url: str) -> None:
    # `veuctl serve --no-webhook` (the chart's API Deployment): /validate lives only on the webhook's port,
    # so nobody who can reach the API can post admission reviews that would be recorded as decisions.
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    api = TestClient(create_app(db_url, webhook=False))
    assert api.post("/validate", json=_review()).status_code in (404, 405)
    assert api.get("/healthz").status_code == 200
    combined = TestClient(create_app(db_url))
    assert combined.post("/validate", json=_review()).status_code == 200


def test_webhook_only_process_serves_metrics_on_its_own_port(tmp_path: Path, db_url: str) -> None:
    import os
    import subprocess
    import sys

    port, metrics = free_port(), free_port()
    env = {**os.environ, "VEU_AUTH": "none"}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--webhook-only", "--port", str(port),
                             "--metrics-port", str(metrics), "--db", db_url, "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        assert httpx.post(f"http://127.0.0.1:{port}/validate", json=_review(), timeout=20).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 404
        text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        assert "veu_admission_decisions_total" in text and 'code="ALLOW"' in text
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run([sys.executable, "-m", "agent", "serve", "--webhook-only", "--no-webhook", "--db", db_url],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "choose one" in (bad.stdout + bad.stderr)
