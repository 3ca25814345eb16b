"""Renews the webhook's self-signed CA and serving certificate before they expire (chart CronJob).

Runs daily in the veu-governor image when cert-manager is not used. The Secrets are the source of
truth (as in open-policy-agent/cert-controller): it re-issues the serving certificate inside the
renewal window, replaces a CA that has less than one certificate lifetime left, and publishes a CA
bundle holding the new and the previous CA in the ValidatingWebhookConfiguration, so pods that still
present the old certificate keep working until the kubelet refreshes their Secret volume (the server
reloads the files without a restart). It changes nothing while everything is healthy.

Configuration (environment): NAMESPACE, CA_SECRET, TLS_SECRET, WEBHOOK_CONFIG, SERVICE (comma-separated:
the webhook Service first, then the API Service when it shares the certificate), CA_DAYS,
CERT_DAYS, RENEW_BEFORE_DAYS; KUBE_API_URL only for tests (otherwise the in-cluster service account).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client, config

ANNOTATION = "veu-governor.io/not-after-unix"


@dataclass(frozen=True)
class Settings:
    namespace: str
    ca_secret: str
    tls_secret: str
    webhook_config: str
    service: str
    ca_days: int
    cert_days: int
    renew_before_days: int

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        missing = [k for k in ("NAMESPACE", "CA_SECRET", "TLS_SECRET", "WEBHOOK_CONFIG", "SERVICE") if not env.get(k)]
        if missing:
            raise SystemExit(f"rotate_certs: missing environment: {', '.join(missing)}")
        return cls(env["NAMESPACE"], env["CA_SECRET"], env["TLS_SECRET"], env["WEBHOOK_CONFIG"], env["SERVICE"],
                   int(env.get("CA_DAYS", "3650")), int(env.get("CERT_DAYS", "365")),
                   int(env.get("RENEW_BEFORE_DAYS", "60")))

    @property
    def services(self) -> list[str]:
        """SERVICE, comma-separated: the webhook's Service first, then any other that presents the certificate."""
        return [x.strip() for x in self.service.split(",") if x.strip()]

    @property
    def dns_names(self) -> list[str]:
        """Each Service in SERVICE (comma-separated: the webhook's, then the API's) in its four in-cluster forms."""
        ns = self.namespace
        return [n for s in self.services for n in (s, f"{s}.{ns}", f"{s}.{ns}.svc", f"{s}.{ns}.svc.cluster.local")]


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load(secret: Any) -> tuple[x509.Certificate | None, bytes | None]:
    data = (secret.data if secret is not None else None) or {}
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        key = base64.b64decode(data["tls.key"])
        serialization.load_pem_private_key(key, password=None)
        return cert, key
    except (KeyError, ValueError, TypeError):
        return None, None


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def new_ca(name: str, days: int, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def new_leaf(s: Settings, ca: x509.Certificate, ca_key: Any, now: dt.datetime) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{s.services[0]}.{s.namespace}.svc")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=s.cert_days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in s.dns_names]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _read_secret(core: client.CoreV1Api, s: Settings, name: str) -> Any:
    try:
        return core.read_namespaced_secret(name, s.namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _write_secret(core: client.CoreV1Api, s: Settings, name: str, data: dict[str, bytes], not_after: dt.datetime,
                  exists: bool) -> None:
    body = {
        "metadata": {"name": name, "namespace": s.namespace,
                     "annotations": {ANNOTATION: str(int(not_after.timestamp()))}},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    if not exists:
        # The chart creates both Secrets; this job may only patch them (RBAC cannot scope `create` by name).
        raise SystemExit(f"rotate_certs: Secret {s.namespace}/{name} is missing: run `helm upgrade` to recreate it")
    core.patch_namespaced_secret(name, s.namespace, body)


def rotate(s: Settings, core: client.CoreV1Api, admission: client.AdmissionregistrationV1Api,
           now: dt.datetime | None = None) -> dict[str, Any]:
    """One reconciliation; returns what changed (printed as one JSON line by main)."""
    now = now or dt.datetime.now(dt.UTC)
    done: dict[str, Any] = {"ca": "kept", "certificate": "kept", "ca_bundle": "kept"}
    ca_secret = _read_secret(core, s, s.ca_secret)
    ca, ca_key_pem = _load(ca_secret)
    old_ca: x509.Certificate | None = None
    if ca is None or ca.not_valid_after_utc - now < dt.timedelta(days=s.cert_days):
        old_ca = ca
        ca, key = new_ca(f"{s.services[0]}-ca", s.ca_days, now)
        ca_key_pem = _key_pem(key)
        _write_secret(core, s, s.ca_secret, {"tls.crt": _pem(ca), "tls.key": ca_key_pem}, ca.not_valid_after_utc,
                      ca_secret is not None)
        done["ca"] = "replaced" if old_ca else "created"
    assert ca_key_pem is not None
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)

    tls_secret = _read_secret(core, s, s.tls_secret)
    leaf, _ = _load(tls_secret)
    sans: list[str] = []
    if leaf is not None:
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.DNSName)
        except x509.ExtensionNotFound:
            sans = []
    bundle = _pem(ca) + (_pem(old_ca) if old_ca is not None else b"")
    if (leaf is None or done["ca"] != "kept" or not _signed_by(leaf, ca)
            or leaf.not_valid_after_utc - now < dt.timedelta(days=s.renew_before_days)
            or not set(s.dns_names) <= set(sans)):
        leaf, leaf_key = new_leaf(s, ca, ca_key, now)
        _write_secret(core, s, s.tls_secret, {"tls.crt": _pem(leaf), "tls.key": _key_pem(leaf_key), "ca.crt": bundle},
                      leaf.not_valid_after_utc, tls_secret is not None)
        done["certificate"] = "renewed" if tls_secret is not None else "created"
    done["certificate_not_after"] = leaf.not_valid_after_utc.isoformat()

    # Raw JSON keeps every webhook field exactly as stored (the merge patch replaces the list whole).
    raw: Any = admission.read_validating_webhook_configuration(s.webhook_config, _preload_content=False)
    webhooks: list[dict[str, Any]] = json.loads(raw.data).get("webhooks") or []
    encoded = base64.b64encode(bundle).decode()
    current = {w.get("clientConfig", {}).get("caBundle") for w in webhooks}
    trusted = bool(current) and all(_bundle_trusts(b, ca) for b in current)
    if done["ca"] != "kept" or not trusted:
        for w in webhooks:
            w.setdefault("clientConfig", {})["caBundle"] = encoded
        admission.patch_validating_webhook_configuration(s.webhook_config, {"webhooks": webhooks})
        done["ca_bundle"] = "updated"
    return done


def _bundle_trusts(encoded: str | None, ca: x509.Certificate) -> bool:
    if not encoded:
        return False
    try:
        return ca in x509.load_pem_x509_certificates(base64.b64decode(encoded))
    except ValueError:
        return False


def main() -> int:
    s = Settings.from_env(dict(os.environ))
    url = os.environ.get("KUBE_API_URL")
    if url:
        api_client = client.ApiClient(client.Configuration(host=url))
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api_client = client.ApiClient()
    with api_client:
        result = rotate(s, client.CoreV1Api(api_client), client.AdmissionregistrationV1Api(api_client))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
