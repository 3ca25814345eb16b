"""Metering running pods through the real Kubernetes client against kmock: ledger usage, cases, Events, metric."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from prometheus_client import REGISTRY

from agent import cases, ledger
from agent.packs import registry
from agent.store import session_scope
from controllers.metering import EVENT_REASON, Meter, job_ref_of

from .conftest import M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    config = Configuration(host=str(kmock.url).rstrip("/"))
    with ApiClient(config) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def node(km: kmock.KubernetesEmulator, name: str, product: str) -> None:
    km.objects["v1/nodes", None, name] = {"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}}}


def pod(km: kmock.KubernetesEmulator, ns: str, name: str, *, gpus: int, started: datetime, job: str,
        model: str | None = "llm-x", phase: str = "Running", node_name: str = "gpu-node-1") -> None:
    ann = {M + "model": model} if model else {}
    km.objects["v1/pods", ns, name] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "annotations": ann,
                     "labels": {"batch.kubernetes.io/job-name": job}},
        "spec": {"nodeName": node_name, "containers": [
            {"name": "t", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": {"phase": phase, "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


def crossings() -> float:
    return REGISTRY.get_sample_value("veu_metering_threshold_crossings_total") or 0.0


def test_job_reference_follows_the_owning_workload() -> None:
    p = {"metadata": {"namespace": "n", "name": "x-0", "labels": {"jobset.sigs.k8s.io/jobset-name": "big"}}}
    assert job_ref_of(p) == "n/JobSet/big"
    p = {"metadata": {"namespace": "n", "name": "x-0", "labels": {"training.kubeflow.org/job-name": "pt"}}}
    assert job_ref_of(p) == "n/PyTorchJob/pt"
    assert job_ref_of({"metadata": {"namespace": "n", "name": "solo"}}) == "n/Pod/solo"


@pytest.mark.asyncio
async def test_running_pods_are_metered_into_the_ledger_idempotently(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", "NVIDIA-H100-80GB-HBM3")
    pod(kmock, "tenant-ae", "train-0", gpus=8, started=NOW - timedelta(hours=10), job="train")
    pod(kmock, "tenant-ae", "train-1", gpus=8, started=NOW - timedelta(hours=10), job="train")
    pod(kmock, "tenant-ae", "pending", gpus=8, started=NOW, job="train", phase="Pending")
    pod(kmock, "kube-system", "dcgm", gpus=8, started=NOW - timedelta(hours=10), job="x")
    meter = Meter(*apis, store)
    r1 = await asyncio.to_thread(meter.tick, NOW)
    r2 = await asyncio.to_thread(meter.tick, NOW)  # same interval re-reported: replaced, not added
    assert r1.pods_metered == r2.pods_metered == 2
    assert r1.chip_seconds == pytest.approx(2 * 8 * 10 * 3600)
    with session_scope(store) as s:
        view = ledger.model_view(s, registry(), "llm-x", NOW.date())
    runs = view["runs"]
    assert sorted(r["job"] for r in runs) == ["tenant-ae/Job/train#train-0", "tenant-ae/Job/train#train-1"]
    # 16 H100 × 36,000 s × 9.894e14 FLOP/s × default utilization 0.35
    assert sum(r["operations"] for r in runs) == pytest.approx(16 * 36000 * 9.894e14 * 0.35, rel=1e-3)
    assert r1.crossings == []


@pytest.mark.asyncio
async def test_running_lineage_crossing_1e26_opens_a_case_and_raises_an_event_and_metric(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", "NVIDIA-H100-80GB-HBM3")
    # Whatever was declared, 65,536 H100 running for 60 days at the default utilization did 1.18e26 operations.
    started = NOW - timedelta(days=60)
    for i in range(64):
        pod(kmock, "tenant-ae", f"llm-{i}", gpus=1024, started=started, job="llm", model="llm-big")
    before = crossings()
    r = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    ops = 65536 * 60 * 86400 * 9.894e14 * 0.35
    assert ops > 1e26
    assert len(r.crossings) == 1 and r.crossings[0]["model"] == "llm-big"
    assert r.crossings[0]["operations"] == pytest.approx(ops, rel=1e-3)
    assert crossings() == before + 1
    with session_scope(store) as s:
        opened = cases.list_cases(s, "open")
    assert len(opened) == 1 and opened[0]["source"] == "metering" and opened[0]["customer"] == "Emirates AI"
    events = [o.raw for (res, _ns, _n), o in kmock.objects.items() if res.group == "events.k8s.io"]
    assert len(events) == 1
    ev = events[0]
    assert ev["reason"] == EVENT_REASON and ev["type"] == "Warning" and ev["reportingController"]
    assert ev["regarding"]["kind"] == "Pod" and f"case {opened[0]['id']}" in ev["note"]
    # The next tick reuses the open case: no second event, no second count.
    r2 = await asyncio.to_thread(Meter(*apis, store).tick, NOW + timedelta(minutes=1))
    assert r2.crossings == [] and crossings() == before + 1


@pytest.mark.asyncio
async def test_tier1_customer_lineage_is_metered_but_opens_no_case(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    node(kmock, "gpu-node-1", "NVIDIA-H100-80GB-HBM3")
    for i in range(64):
        pod(kmock, "tenant-us", f"llm-{i}", gpus=8, started=NOW - timedelta(days=60), job="llm", model="us-big")
    r = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert r.pods_metered == 64 and r.crossings == []
    with session_scope(store) as s:
        assert cases.list_cases(s) == []


@pytest.mark.asyncio
async def test_metered_usage_counts_toward_the_next_admission(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, decide_review: Any,
) -> None:
    from .conftest import job, review

    node(kmock, "gpu-node-1", "NVIDIA-H100-80GB-HBM3")
    nxt = job("next", pods=1024, annotations={M + "model": "grow", M + "expected-hours": "3000"})  # 8.75e25
    assert decide_review(review(nxt, dry_run=True), now=NOW).code == "ALLOW"
    for i in range(32):
        pod(kmock, "tenant-ae", f"old-{i}", gpus=512, started=NOW - timedelta(days=60), job="old", model="grow")
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)  # 16,384 H100 × 60 days × 0.35 = 2.94e25 metered
    out = decide_review(review(nxt), now=NOW)
    assert out.code == "HOLD_FOR_INQUIRY", out.message


@pytest.mark.asyncio
async def test_training_on_a_published_model_is_one_derivative_case_for_metering_and_the_webhook(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, decide_review: Any,
) -> None:
    from datetime import date

    from agent import cases, ledger
    from agent.packs import registry
    from agent.store import session_scope

    from .conftest import job, review

    with session_scope(store) as s:
        ledger.add_model(s, "open-9e25", "US Lab", published=True, published_on=date(2026, 1, 1))
        ledger.add_run(s, "open-9e25", ledger.estimate(registry(), date(2026, 5, 1), operations=9e25),
                       start=date(2025, 6, 1))
    node(kmock, "gpu-node-1", "NVIDIA-H100-80GB-HBM3")
    for i in range(64):
        pod(kmock, "tenant-ae", f"llm-{i}", gpus=1024, started=NOW - timedelta(days=60), job="llm",
            model="open-9e25")
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    with session_scope(store) as s:
        opened = cases.list_cases(s, "open")
    assert [c["model"] for c in opened] == ["Emirates AI/open-9e25"]  # the derivative, not the published model
    nxt = job("next", pods=8, annotations={M + "model": "open-9e25", M + "expected-hours": "10"})
    out = decide_review(review(nxt), now=NOW)
    assert out.code == "HOLD_FOR_INQUIRY" and out.case_id == opened[0]["id"]  # the same case, not a second one


@pytest.mark.asyncio
async def test_controllers_command_meters_once_through_a_kubeconfig(
    kmock: kmock.KubernetesEmulator, store: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json
    import os
    import subprocess
    import sys

    node(kmock, "gpu-node-1", "NVIDIA-H100-80GB-HBM3")
    pod(kmock, "tenant-ae", "train-0", gpus=8, started=datetime.now(UTC) - timedelta(hours=1), job="train")
    kc = tmp_path / "kubeconfig"
    kc.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "k",
        "clusters": [{"name": "k", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}]}))
    env = {**os.environ, "KUBECONFIG": str(kc)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "agent", "admission", "controllers", "--once",
                                                 "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["pods_metered"] == 1 and out["chip_seconds"] == pytest.approx(8 * 3600, rel=0.01)


@pytest.mark.asyncio
async def test_running_jobs_crossing_under_a_case_the_webhook_already_holds_are_reported_and_added_to_it(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, decide_review: Any,
) -> None:
    from .conftest import job, review

    # The webhook held a second job of the lineage: its case is open. The first job was already running.
    held = decide_review(review(job("more", pods=8, annotations={M + "model": "llm-big", M + "operations": "2e26"})),
                         now=NOW)
    assert held.code == "HOLD_FOR_INQUIRY"
    node(kmock, "gpu-node-1", "NVIDIA-H100-80GB-HBM3")
    for i in range(64):
        pod(kmock, "tenant-ae", f"llm-{i}", gpus=1024, started=NOW - timedelta(days=60), job="llm", model="llm-big")
    before = crossings()
    r = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert [c["case_id"] for c in r.crossings] == [held.case_id]  # the running overrun is news: reported
    assert crossings() == before + 1
    events = [o.raw for (res, _ns, _n), o in kmock.objects.items() if res.group == "events.k8s.io"]
    assert len(events) == 1 and f"case {held.case_id}" in events[0]["note"]
    with session_scope(store) as s:
        (case,) = cases.list_cases(s, "open")
    assert case["id"] == held.case_id and any(j.startswith("tenant-ae/Job/llm#") for j in case["jobs"])
    r2 = await asyncio.to_thread(Meter(*apis, store).tick, NOW + timedelta(minutes=1))
    assert r2.crossings == [] and crossings() == before + 1
