"""The webhook over real HTTPS: uvicorn with TLS on 127.0.0.1, the Kubernetes client's JSON, hostile bodies."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from agent import cases
from agent.packs import registry
from agent.store import session_scope
from policies import redflag

from .conftest import M, review
from .tlsutil import CA, ServerThread

BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}


@pytest.fixture()
def pki(tmp_path: Path) -> tuple[CA, Path, Path, Path]:
    ca = CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert, key)
    return ca, ca.write_ca(tmp_path / "ca.crt"), cert, key


@pytest.fixture(params=[False, True], ids=["combined-app", "webhook-only-port"])
def webhook_only(request: pytest.FixtureRequest) -> bool:
    """Both ways /validate is served: the combined app's FastAPI route, and the webhook-only port (the one the
    chart deploys) answering ahead of the routing (ValidateEndpoint)."""
    return bool(request.param)


@pytest.fixture()
def server(store: str, pki: tuple[CA, Path, Path, Path], webhook_only: bool) -> Iterator[ServerThread]:
    _, _, cert, key = pki
    with ServerThread(cert, key, store, webhook_only=webhook_only) as srv:
        yield srv


@pytest.fixture()
def http(server: ServerThread, pki: tuple[CA, Path, Path, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(pki[1])), timeout=20) as c:
        yield c


def k8s_job(name: str, ns: str, parallelism: int, gpus: int, annotations: dict[str, str]) -> dict[str, Any]:
    """A Job built with the official Kubernetes client and serialized the way it sends it."""
    container = k8s.V1Container(name="trainer", image="train:1",
                                resources=k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}))
    pod = k8s.V1PodTemplateSpec(spec=k8s.V1PodSpec(containers=[container], restart_policy="Never",
                                                   node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}))
    job = k8s.V1Job(api_version="batch/v1", kind="Job",
                    metadata=k8s.V1ObjectMeta(name=name, namespace=ns, annotations=annotations),
                    spec=k8s.V1JobSpec(parallelism=parallelism, template=pod))
    return dict(k8s.ApiClient().sanitize_for_serialization(job))


def post(http: httpx.Client, body: Any) -> httpx.Response:
    return http.post("/validate", content=json.dumps(body), headers={"content-type": "application/json"})


def test_held_job_round_trip_over_https_echoes_uid_and_denies_with_403(http: httpx.Client, store: str) -> None:
    body = review(k8s_job("llm", "tenant-ae", 512, 8, BIG), uid="7f3a-uid")
    r = post(http, body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    out = r.json()
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == "7f3a-uid" and resp["allowed"] is False
    assert resp["status"]["code"] == 403 and "red-flag-28" in resp["status"]["message"]
    assert resp["auditAnnotations"]["code"] == redflag.HOLD_FOR_INQUIRY
    with session_scope(store) as s:
        assert [c["status"] for c in cases.list_cases(s)] == ["open"]


def test_allowed_job_round_trip_over_https(http: httpx.Client) -> None:
    r = post(http, review(k8s_job("small", "tenant-ae", 2, 8, {M + "expected-hours": "10"}), uid="u-ok"))
    assert r.json()["response"] == {**r.json()["response"], "uid": "u-ok", "allowed": True}


def test_dry_run_over_https_denies_but_records_nothing(http: httpx.Client, store: str) -> None:
    r = post(http, review(k8s_job("llm", "tenant-ae", 512, 8, BIG), dry_run=True))
    assert r.json()["response"]["allowed"] is False
    with session_scope(store) as s:
        assert cases.list_cases(s) == [] and cases.decisions(s) == []


def test_tier3_and_case_resolution_over_https(http: httpx.Client, store: str, webhook_only: bool) -> None:
    assert post(http, review(k8s_job("x", "tenant-mo", 1, 1, {}))).json()["response"]["auditAnnotations"]["code"] \
        == redflag.DENY_TIER3
    held = post(http, review(k8s_job("llm", "tenant-ae", 512, 8, BIG))).json()["response"]
    case_id = int(held["auditAnnotations"]["case"])
    if webhook_only:  # no API on that port: resolved as `veuctl cases resolve` does
        with session_scope(store) as s:
            cases.resolve_case(s, registry(), case_id, export_intent=False, by="compliance")
    else:
        r = http.post(f"/api/v1/cases/{case_id}/resolve", json={"export_intent": "no", "by": "compliance"})
        assert r.status_code == 200 and r.json()["status"] == "resolved"
    again = post(http, review(k8s_job("llm", "tenant-ae", 512, 8, BIG))).json()["response"]
    assert again["allowed"] is True and again["auditAnnotations"]["code"] == redflag.ALLOW_AFTER_INQUIRY


@pytest.mark.parametrize(("content", "why"), [
    (b"this is not json", "not valid JSON"),
    (json.dumps({"apiVersion": "v1", "kind": "Pod"}).encode(), "apiVersion"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}).encode(),
     "request.uid"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    (b"[]", "AdmissionReview"),
])
def test_malformed_reviews_get_a_clear_400(http: httpx.Client, content: bytes, why: str) -> None:
    r = http.post("/validate", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400 and why in r.json()["detail"]


def test_oversized_review_gets_a_clear_400(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEU_WEBHOOK_MAX_BYTES", str(64 * 1024))
    big = review(k8s_job("x", "tenant-ae", 1, 1, {"filler": "x" * 100_000}))
    r = post(http, big)
    assert r.status_code == 400 and "larger than 65536 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        for _ in range(200):
            yield b" " * 1024

    r = http.post("/validate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_deeply_nested_object_inside_a_valid_review_is_denied_with_a_reason(http: httpx.Client) -> None:
    obj = k8s_job("x", "tenant-ae", 1, 1, {})
    nest: Any = {}
    for _ in range(150):
        nest = {"a": nest}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = nest
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": [nest]}}
    r = post(http, review(obj))
    resp = r.json()["response"]
    assert r.status_code == 200 and resp["allowed"] is False and "quantity" in resp["status"]["message"]


def test_metrics_count_decisions_and_latency(http: httpx.Client, webhook_only: bool) -> None:
    post(http, review(k8s_job("x", "tenant-mo", 1, 1, {})))
    if webhook_only:  # that port serves nothing but /validate and the probes (its metrics: --metrics-port)
        assert http.get("/metrics").status_code == 404
        from prometheus_client import REGISTRY, generate_latest

        text = generate_latest(REGISTRY).decode()
    else:
        text = http.get("/metrics").text
    assert 'veu_admission_decisions_total{allowed="false",code="DENY_TIER3",mode="enforce"}' in text
    assert "veu_admission_review_duration_seconds_bucket" in text


@pytest.mark.parametrize(("mode", "allowed"), [("deny", False), ("allow", True)])
def test_store_unavailable_follows_the_configured_failure_mode(
    pki: tuple[CA, Path, Path, Path], monkeypatch: pytest.MonkeyPatch, mode: str, allowed: bool, webhook_only: bool,
) -> None:
    monkeypatch.setenv("VEU_WEBHOOK_FAILURE_MODE", mode)
    _, ca, cert, key = pki
    with ServerThread(cert, key, "postgresql://postgres@127.0.0.1:1/none", webhook_only=webhook_only) as srv, \
            httpx.Client(base_url=srv.url, verify=ssl.create_default_context(cafile=str(ca)), timeout=20) as c:
        r = post(c, review(k8s_job("x", "tenant-ae", 1, 1, {}), uid="u-db"))
    resp = r.json()["response"]
    assert r.status_code == 200 and resp["uid"] == "u-db" and resp["allowed"] is allowed
    text = resp["warnings"][0] if allowed else resp["status"]["message"]
    assert "store unavailable" in text and f"VEU_WEBHOOK_FAILURE_MODE={mode}" in text


def _peer_cert(port: int, ca: Path) -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_rotated_certificate_is_served_without_restart(server: ServerThread, pki: tuple[CA, Path, Path, Path]) -> None:
    ca, ca_path, cert, key = pki
    before = _peer_cert(server.port, ca_path)
    time.sleep(0.05)  # distinct mtime
    new = ca.issue(cert, key, cn="rotated")
    deadline = time.monotonic() + 10
    while server.reloader.reloads == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = _peer_cert(server.port, ca_path)
    assert after != before and after == new.public_bytes(__import__("cryptography").hazmat.primitives.serialization
                                                          .Encoding.DER)
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(ca_path)), timeout=20) as c:
        assert c.get("/healthz").text == "ok"


def test_registry_is_loaded(store: str) -> None:
    assert registry().provision("admission-settings", __import__("datetime").date.today()).values["mode"] == "enforce"
