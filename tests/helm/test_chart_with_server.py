"""What the chart renders works with the real product: packs load, `veuctl serve` takes the certificate.

The chart's policy ConfigMap is written to a directory and loaded as VEU_POLICY_DIRS, and `veuctl serve`
is started with the chart's serving certificate; the API server's view is reproduced by verifying the
server against the webhook configuration's caBundle under the Service's DNS name.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.packs import load_registry
from tests.helm.chart import NAMESPACE, one, render, render_set
from tests.helm.test_chart import _webhooks


def _write_policy_dir(objs: Any, directory: Path) -> Path:
    cm = one(objs, "ConfigMap", "-policies")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in cm["data"].items():
        (directory / name).write_text(text)
    return directory


def test_chart_admission_values_become_the_admission_settings_the_product_reads(tmp_path: Path) -> None:
    packs = load_registry([_write_policy_dir(render_set("audit-values"), tmp_path / "chart")])
    settings = packs.provision("admission-settings", dt.date(2026, 11, 23))
    assert settings.pack_id == "helm-values"
    assert settings.value("mode") == "audit"
    assert {"kube-system", NAMESPACE} <= set(settings.value("exempt_namespaces"))
    # The operator's own pack from `policyPacks` loads too and wins for its provision.
    est = packs.provision("estimation-defaults", dt.date(2026, 11, 23))
    assert est.pack_id == "site-overrides" and est.value("utilization") == 0.4


def test_default_chart_pack_keeps_enforce_mode_and_the_built_in_values(tmp_path: Path) -> None:
    packs = load_registry([_write_policy_dir(render_set("default"), tmp_path / "chart")])
    on = dt.date(2026, 11, 23)
    settings = packs.provision("admission-settings", on)
    builtin = load_registry().provision("admission-settings", on)
    assert settings.value("mode") == "enforce"
    for key in builtin.values:
        if key != "exempt_namespaces":
            assert settings.value(key) == builtin.value(key), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, ca_file: Path, server_name: str, path: str) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        conn = http.client.HTTPConnection(server_name)
        conn.sock = tls
        conn.request("GET", path, headers={"Host": server_name})
        resp = conn.getresponse()
        return resp.status, resp.read()


@pytest.mark.slow
def test_veuctl_serve_presents_the_chart_certificate_to_the_api_server(tmp_path: Path, db_url: str) -> None:
    objs = render()
    tls = one(objs, "Secret", "-tls")
    for key in ("tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(tls["data"][key]))
    (bundle,) = {w["clientConfig"]["caBundle"] for w in _webhooks(objs)}
    (tmp_path / "ca-bundle.pem").write_bytes(base64.b64decode(bundle))
    service = one(objs, "Service", "-governor")["metadata"]["name"]  # the webhook Service, not "-api"
    server_name = f"{service}.{NAMESPACE}.svc"  # what the API server dials for clientConfig.service
    port = _free_port()
    env = {**os.environ, "VEU_DATABASE_URL": db_url,
           "VEU_POLICY_DIRS": str(_write_policy_dir(objs, tmp_path / "policies"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "serve", "--webhook-only", "--host", "127.0.0.1", f"--port={port}",
         f"--tls-cert={tmp_path / 'tls.crt'}", f"--tls-key={tmp_path / 'tls.key'}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        status, body = 0, b""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"veuctl serve exited: {out[-2000:]}")
            try:
                status, body = _get(port, tmp_path / "ca-bundle.pem", server_name, "/healthz")
                break
            except (ConnectionError, OSError):
                time.sleep(0.3)
        assert status == 200, body
        # The same certificate under a name the Service does not carry is refused, as the API server would.
        with pytest.raises(ssl.SSLCertVerificationError):
            _get(port, tmp_path / "ca-bundle.pem", "evil.example.com", "/healthz")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
