"""Without cert-manager, `helm upgrade` keeps the CA and renews the serving certificate before expiry.

The chart reads the live Secrets with Helm's `lookup`. Here Helm v4 (helm-python-sdk `Config.render`,
the cluster-aware render an upgrade performs) talks to kmock, a real HTTP Kubernetes API emulator
holding the Secrets of a previous release.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import helm_python as helm
import kmock
import pytest
import yaml
from cryptography import x509
from kubernetes.client import ApiClient, Configuration, CoreV1Api

from tests.helm.chart import CHART, NAMESPACE, RELEASE, one, render
from tests.helm.test_chart import _verify, _webhooks

DAY = 86400
CA_SECRET = f"{RELEASE}-veu-governor-ca"
TLS_SECRET = f"{RELEASE}-veu-governor-tls"


def _objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    return [d for p, t in manifests.items() if not p.endswith(".txt") for d in yaml.safe_load_all(t) if d]


def _previous_release(ca_days_left: int, cert_days_left: int, values: dict[str, Any] | None = None
                      ) -> list[dict[str, Any]]:
    """The two Secrets a previous install (rendered with ``values``) left behind, the recorded expiry adjusted."""
    objs = render(values)
    now = int(time.time())
    out = []
    for name, days in ((CA_SECRET, ca_days_left), (TLS_SECRET, cert_days_left)):
        secret = one(objs, "Secret", name[len(RELEASE) + len("-veu-governor"):])
        secret["metadata"]["annotations"]["veu-governor.io/not-after-unix"] = str(now + days * DAY)
        out.append(secret)
    return out


async def _upgrade_render(km: kmock.KubernetesEmulator, seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    km.resources["v1/secrets"] = km.ResourceInfo(kind="Secret", namespaced=True)
    url = str(km.url).rstrip("/")
    with ApiClient(Configuration(host=url)) as client:
        for secret in seed:
            await asyncio.to_thread(CoreV1Api(client).create_namespaced_secret, NAMESPACE, secret)

    def upgrade() -> dict[str, str]:
        with helm.Config(kube_apiserver=url, namespace=NAMESPACE) as cfg, helm.Chart.load(CHART) as chart:
            return cfg.render(chart, {}, name=RELEASE, namespace=NAMESPACE, is_upgrade=True, revision=2)

    return _objects(await asyncio.to_thread(upgrade))


def _pem(secret: dict[str, Any], key: str = "tls.crt") -> bytes:
    return base64.b64decode(secret["data"][key])


def _bundle(objs: list[dict[str, Any]]) -> list[x509.Certificate]:
    (bundle,) = {w["clientConfig"]["caBundle"] for w in _webhooks(objs)}
    return x509.load_pem_x509_certificates(base64.b64decode(bundle))


@pytest.mark.asyncio
async def test_upgrade_keeps_a_healthy_ca_and_serving_certificate(kmock: kmock.KubernetesEmulator) -> None:
    seed = _previous_release(ca_days_left=3000, cert_days_left=200)
    objs = await _upgrade_render(kmock, seed)
    assert _pem(one(objs, "Secret", "-ca")) == _pem(seed[0])
    assert _pem(one(objs, "Secret", "-tls")) == _pem(seed[1]), "no churn while the certificate is healthy"
    (ca,) = _bundle(objs)
    assert ca == x509.load_pem_x509_certificate(_pem(seed[0]))


@pytest.mark.asyncio
async def test_upgrade_reissues_a_healthy_certificate_that_does_not_name_every_service_presenting_it(
    kmock: kmock.KubernetesEmulator,
) -> None:
    # Installed without the API (or before the API Service shared the certificate); now upgraded with it.
    seed = _previous_release(ca_days_left=3000, cert_days_left=200, values={"api": {"enabled": False}})
    assert "-api" not in seed[1]["metadata"]["annotations"]["veu-governor.io/dns-names"]
    objs = await _upgrade_render(kmock, seed)
    assert _pem(one(objs, "Secret", "-ca")) == _pem(seed[0]), "the CA is kept"
    tls = one(objs, "Secret", "-tls")
    assert _pem(tls) != _pem(seed[1])
    leaf = x509.load_pem_x509_certificate(_pem(tls))
    _verify(x509.load_pem_x509_certificate(_pem(seed[0])), leaf)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{RELEASE}-veu-governor-api.{NAMESPACE}.svc" in sans


@pytest.mark.asyncio
async def test_upgrade_renews_a_serving_certificate_inside_the_renewal_window(kmock: kmock.KubernetesEmulator) -> None:
    seed = _previous_release(ca_days_left=3000, cert_days_left=30)  # renewBeforeDays: 60
    objs = await _upgrade_render(kmock, seed)
    new = x509.load_pem_x509_certificate(_pem(one(objs, "Secret", "-tls")))
    old = x509.load_pem_x509_certificate(_pem(seed[1]))
    assert new.serial_number != old.serial_number
    (ca,) = _bundle(objs)
    assert ca == x509.load_pem_x509_certificate(_pem(seed[0])), "same CA: the API server's trust is unchanged"
    _verify(ca, new)
    assert int(one(objs, "Secret", "-tls")["metadata"]["annotations"]["veu-governor.io/not-after-unix"]) > (
        time.time() + 300 * DAY)


@pytest.mark.asyncio
async def test_upgrade_replacing_an_expiring_ca_trusts_old_and_new_during_the_switch(
    kmock: kmock.KubernetesEmulator,
) -> None:
    seed = _previous_release(ca_days_left=100, cert_days_left=90)  # < one certificate lifetime left
    objs = await _upgrade_render(kmock, seed)
    old_ca = x509.load_pem_x509_certificate(_pem(seed[0]))
    new_ca = x509.load_pem_x509_certificate(_pem(one(objs, "Secret", "-ca")))
    assert new_ca != old_ca
    bundle = _bundle(objs)
    assert bundle == [new_ca, old_ca], "pods still serving the old certificate keep verifying"
    _verify(new_ca, x509.load_pem_x509_certificate(_pem(one(objs, "Secret", "-tls"))))
    _verify(old_ca, x509.load_pem_x509_certificate(_pem(seed[1])))


@pytest.mark.asyncio
async def test_a_damaged_ca_secret_is_replaced_instead_of_failing_the_upgrade(kmock: kmock.KubernetesEmulator) -> None:
    seed = _previous_release(ca_days_left=3000, cert_days_left=200)
    seed[0]["data"]["tls.crt"] = base64.b64encode(b"not a certificate").decode()
    objs = await _upgrade_render(kmock, seed)
    (ca,) = _bundle(objs)
    _verify(ca, x509.load_pem_x509_certificate(_pem(one(objs, "Secret", "-tls"))))
