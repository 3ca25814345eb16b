"""`webhook.clientAuth.allowedNames`: the chart pins the API server's client certificate name (session 23).

With `webhook.clientAuth` alone the webhook admitted every certificate its CA signed; pointed at the cluster CA
that is every kubelet's too. `allowedNames` is passed to the webhook as `--client-name` (one a name), checked by
the schema (a list of distinct, non-blank names) and refused without `clientAuth.enabled` (there would be no
certificate to check). The last test runs the rendered webhook command line.
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import kubernetes_validate
import pytest

from tests.helm.chart import CHART, NAMESPACE, one, render, render_set
from tests.helm.test_chart_ports import CLIENT_AUTH_CM, _container, _localize, _review, _wait_up, _webhook_pod

NAMES = ["kube-apiserver-webhook-client", "system:kube-apiserver"]
PINNED = {"webhook": {"clientAuth": {**CLIENT_AUTH_CM["webhook"]["clientAuth"], "allowedNames": NAMES}}}


def _args(objs: Any) -> list[str]:
    return list(_container(_webhook_pod(objs), "webhook")["args"])


def test_allowed_names_are_passed_to_the_webhook_as_client_name() -> None:
    args = _args(render(PINNED))
    assert [a for a in args if a.startswith("--client-name")] == [f"--client-name={n}" for n in NAMES]
    assert "--client-ca=/etc/veu-governor/client-ca/ca.crt" in args


def test_without_allowed_names_no_client_name_is_passed() -> None:
    assert not [a for a in _args(render(CLIENT_AUTH_CM)) if a.startswith("--client-name")]
    assert not [a for a in _args(render_set("default")) if a.startswith("--client-name")]


def test_pinned_names_render_valid_objects_and_lint_clean() -> None:
    for obj in render(PINNED):
        if obj["kind"] not in {"Certificate", "Issuer", "ServiceMonitor"}:
            kubernetes_validate.validate(obj, "1.30", strict=True)
    report = helm.lint(CHART, PINNED, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert [m for m in report["messages"] if m["severity"] >= 2] + report["errors"] == []


@pytest.mark.parametrize("names", [
    "kube-apiserver-webhook-client",  # a string, not a list
    [""],
    ["  "],
    [" kube-apiserver"],
    ["kube-apiserver", "kube-apiserver"],
    [7],
], ids=["string", "empty", "blank", "padded", "duplicate", "number"])
def test_schema_refuses_bad_allowed_names_naming_the_field(names: Any) -> None:
    values = {"webhook": {"clientAuth": {**CLIENT_AUTH_CM["webhook"]["clientAuth"], "allowedNames": names}}}
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    assert "/webhook/clientAuth/allowedNames" in str(err.value), str(err.value)


def test_allowed_names_without_client_auth_fail_the_render_with_a_fix() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render({"webhook": {"clientAuth": {"allowedNames": NAMES}}}, name="veu", namespace=NAMESPACE)
    assert "webhook.clientAuth.allowedNames" in str(err.value) and "enabled" in str(err.value), str(err.value)


@pytest.mark.slow
def test_the_rendered_webhook_admits_only_the_named_client_certificate(tmp_path: Path, db_url: str) -> None:
    from tests.security.test_client_name_session23o import _client
    from tests.webhook.tlsutil import CA, free_port

    objs = render(PINNED)
    tls_dir, ca_dir, policies = tmp_path / "tls", tmp_path / "client-ca", tmp_path / "policies"
    for d in (tls_dir, ca_dir, policies):
        d.mkdir()
    for key, data in one(objs, "Secret", "-tls")["data"].items():
        (tls_dir / key).write_bytes(base64.b64decode(data))
    for name, text in one(objs, "ConfigMap", "-policies")["data"].items():
        (policies / name).write_text(text)
    cluster_ca = CA("kubernetes")  # the operator's ConfigMap holds the cluster CA, which signs kubelets' too
    cluster_ca.write_ca(ca_dir / "ca.crt")
    port = free_port()
    args = _localize(_container(_webhook_pod(objs), "webhook"), {"tls": tls_dir, "client-ca": ca_dir}, port)
    env = {**os.environ, "VEU_DATABASE_URL": db_url, "VEU_POLICY_DIRS": str(policies)}
    proc = subprocess.Popen([sys.executable, "-m", "agent", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_up(proc, port)

        def post(cn: str) -> httpx.Response:
            ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
            ctx.check_hostname = False  # dialled as 127.0.0.1; the chain is still verified against the chart CA
            ctx.load_cert_chain(*_client(cluster_ca, tmp_path, cn))
            with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx, timeout=20) as c:
                return c.post("/validate", json=_review())

        for cn in NAMES:
            r = post(cn)
            assert r.status_code == 200 and r.json()["response"]["allowed"] is True, r.text
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            post("system:node:gpu-node-7")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert b"system:node:gpu-node-7" in out
