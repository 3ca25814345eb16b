"""The chart's certificate-rotation CronJob renews certificates between upgrades.

`helm/veu-governor/files/rotate_certs.py` (what the CronJob runs) is exercised against kmock, a real
HTTP Kubernetes API emulator seeded with the Secrets and the ValidatingWebhookConfiguration the chart
renders. Time is moved forward by passing `now`, so expiry is real X.509 expiry, not an annotation.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Any

import kmock
import pytest
from cryptography import x509
from kubernetes import client

from tests.helm.chart import CHART, NAMESPACE, RELEASE, of_kind, one, render
from tests.helm.test_chart import _verify, _webhooks

SCRIPT = CHART / "files" / "rotate_certs.py"
DAY = dt.timedelta(days=1)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rotate_certs", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["rotate_certs"] = module
    spec.loader.exec_module(module)
    return module


rc = _script()


def _env(objs: list[dict[str, Any]]) -> dict[str, str]:
    cron = one(objs, "CronJob", "-cert-rotation")
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


async def _seed(km: kmock.KubernetesEmulator, objs: list[dict[str, Any]], *, skip: str = "") -> str:
    km.resources["v1/secrets"] = km.ResourceInfo(kind="Secret", namespaced=True)
    km.resources["admissionregistration.k8s.io/v1/validatingwebhookconfigurations"] = km.ResourceInfo(
        kind="ValidatingWebhookConfiguration", namespaced=False)
    url = str(km.url).rstrip("/")
    with client.ApiClient(client.Configuration(host=url)) as api:
        core, adm = client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)
        for secret in of_kind(objs, "Secret"):
            name = secret["metadata"]["name"]
            if name.endswith(("-ca", "-tls")) and not (skip and name.endswith(skip)):
                await asyncio.to_thread(core.create_namespaced_secret, NAMESPACE, secret)
        (vwc,) = of_kind(objs, "ValidatingWebhookConfiguration")
        await asyncio.to_thread(adm.create_validating_webhook_configuration, vwc)
    return url


async def _rotate(url: str, env: dict[str, str], now: dt.datetime) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with client.ApiClient(client.Configuration(host=url)) as api:
            settings = rc.Settings.from_env(env)
            return dict(rc.rotate(settings, client.CoreV1Api(api), client.AdmissionregistrationV1Api(api), now))
    return await asyncio.to_thread(run)


def _live(km: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any]:
    res = kmock.resource(resource)
    (obj,) = [o.raw for (r, _ns, n), o in km.objects.items() if r == res and n == name and not o.deleted]
    return obj


def _cert(secret: dict[str, Any], key: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def _bundles(km: kmock.KubernetesEmulator) -> list[list[x509.Certificate]]:
    vwc = _live(km, "admissionregistration.k8s.io/v1/validatingwebhookconfigurations", f"{RELEASE}-veu-governor")
    return [x509.load_pem_x509_certificates(base64.b64decode(w["clientConfig"]["caBundle"])) for w in vwc["webhooks"]]


NOW = dt.datetime.now(dt.UTC)


@pytest.mark.asyncio
async def test_a_healthy_installation_is_left_untouched(kmock: kmock.KubernetesEmulator) -> None:
    objs = render()
    url = await _seed(kmock, objs)
    result = await _rotate(url, _env(objs), NOW)
    assert (result["ca"], result["certificate"], result["ca_bundle"]) == ("kept", "kept", "kept")
    assert len(kmock[kmock.method.PATCH]) == 0


@pytest.mark.asyncio
async def test_the_serving_certificate_is_renewed_inside_the_window_with_the_same_ca(
    kmock: kmock.KubernetesEmulator,
) -> None:
    objs = render()
    url = await _seed(kmock, objs)
    old_leaf = _cert(one(objs, "Secret", "-tls"))
    later = NOW + 340 * DAY  # 25 days left on a 365-day certificate; renewBeforeDays 60
    result = await _rotate(url, _env(objs), later)
    assert (result["ca"], result["certificate"], result["ca_bundle"]) == ("kept", "renewed", "kept")
    tls = _live(kmock, "v1/secrets", f"{RELEASE}-veu-governor-tls")
    new_leaf = _cert(tls)
    assert new_leaf.serial_number != old_leaf.serial_number
    assert new_leaf.not_valid_after_utc > later + 300 * DAY
    ca = _cert(one(objs, "Secret", "-ca"))
    _verify(ca, new_leaf)
    assert int(tls["metadata"]["annotations"]["veu-governor.io/not-after-unix"]) == int(
        new_leaf.not_valid_after_utc.timestamp())
    sans = new_leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{RELEASE}-veu-governor.{NAMESPACE}.svc" in sans.get_values_for_type(x509.DNSName)


@pytest.mark.asyncio
async def test_a_certificate_that_does_not_name_the_api_service_is_reissued_at_once(
    kmock: kmock.KubernetesEmulator,
) -> None:
    """An installation from before the API Service shared the certificate: its leaf names the webhook only."""
    url = await _seed(kmock, render({"api": {"enabled": False}}))
    objs = render()
    env = _env(objs)
    result = await _rotate(url, env, NOW)  # far from expiry: renewed for its names alone
    assert (result["ca"], result["certificate"]) == ("kept", "renewed")
    leaf = _cert(_live(kmock, "v1/secrets", f"{RELEASE}-veu-governor-tls"))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    api_svc = one(objs, "Service", "-api")["metadata"]["name"]
    assert f"{api_svc}.{NAMESPACE}.svc" in sans and f"{RELEASE}-veu-governor.{NAMESPACE}.svc" in sans
    cn = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == f"{RELEASE}-veu-governor.{NAMESPACE}.svc"  # the webhook Service stays the subject
    assert (await _rotate(url, env, NOW))["certificate"] == "kept"  # and then it is left alone


@pytest.mark.asyncio
async def test_an_expiring_ca_is_replaced_and_both_cas_are_trusted_during_the_switch(
    kmock: kmock.KubernetesEmulator,
) -> None:
    objs = render()
    url = await _seed(kmock, objs)
    old_ca = _cert(one(objs, "Secret", "-ca"))
    later = NOW + 3400 * DAY  # 250 days left on the CA: less than one certificate lifetime
    result = await _rotate(url, _env(objs), later)
    assert (result["ca"], result["certificate"], result["ca_bundle"]) == ("replaced", "renewed", "updated")
    new_ca = _cert(_live(kmock, "v1/secrets", f"{RELEASE}-veu-governor-ca"))
    assert new_ca != old_ca
    bundles = _bundles(kmock)
    assert len(bundles) == len(_webhooks(objs)) and all(b == [new_ca, old_ca] for b in bundles)
    tls = _live(kmock, "v1/secrets", f"{RELEASE}-veu-governor-tls")
    _verify(new_ca, _cert(tls))
    assert x509.load_pem_x509_certificates(base64.b64decode(tls["data"]["ca.crt"])) == [new_ca, old_ca]
    # Every other webhook field survives the patch (rules, selectors, timeouts, failure policy).
    vwc = _live(kmock, "admissionregistration.k8s.io/v1/validatingwebhookconfigurations", f"{RELEASE}-veu-governor")
    for before, after in zip(_webhooks(objs), vwc["webhooks"], strict=True):
        assert {k: v for k, v in after.items() if k != "clientConfig"} == {
            k: v for k, v in before.items() if k != "clientConfig"}


@pytest.mark.asyncio
async def test_a_missing_secret_stops_with_the_fix_instead_of_creating_one(kmock: kmock.KubernetesEmulator) -> None:
    objs = render()
    url = await _seed(kmock, objs, skip="-tls")
    with pytest.raises(SystemExit, match="run `helm upgrade` to recreate it"):
        await _rotate(url, _env(objs), NOW)


@pytest.mark.asyncio
async def test_the_cronjob_command_runs_end_to_end(kmock: kmock.KubernetesEmulator) -> None:
    objs = render()
    url = await _seed(kmock, objs)
    env = {**os.environ, **_env(objs), "KUBE_API_URL": url}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(SCRIPT), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["certificate"] == "kept"


def test_the_cronjob_mounts_exactly_this_script_and_is_absent_with_cert_manager() -> None:
    objs = render()
    cm = one(objs, "ConfigMap", "-cert-rotation")
    assert cm["data"]["rotate_certs.py"].strip() == SCRIPT.read_text().strip()
    cron = one(objs, "CronJob", "-cert-rotation")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert not of_kind(render({"tls": {"certManager": {"enabled": True}},
                               "database": {"url": "postgresql://db/veu"}}), "CronJob")
