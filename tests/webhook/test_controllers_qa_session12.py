"""Running-jobs metering against kmock: no usage lost to a failed pass or to a pod's several MIG profiles,
Events the API server accepts, accelerator pods metering cannot read named in the tick's report; and the Kueue
AdmissionCheck leaves a Workload being deleted alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from sqlmodel import select

from agent import cases, ledger, parties
from agent.store import session_scope
from agent.store.tables.ledger import MeteredUsage
from controllers.kueue import AdmissionCheckController
from controllers.metering import EVENT_REASON, Meter

from .conftest import KueueApi, M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def node(km: kmock.KubernetesEmulator) -> None:
    km.objects["v1/nodes", None, "gpu-node-1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "gpu-node-1", "labels": {"nvidia.com/gpu.product": H100}}}


def pod(km: kmock.KubernetesEmulator, name: str, *, gpus: int, started: datetime, model: str, ns: str = "tenant-ae",
        phase: str = "Running", finished: datetime | None = None, spec: dict[str, Any] | None = None) -> None:
    status: dict[str, Any] = {"phase": phase, "startTime": _ts(started)}
    if finished is not None:
        status["containerStatuses"] = [{"name": "t", "state": {"terminated": {
            "exitCode": 0, "startedAt": _ts(started), "finishedAt": _ts(finished)}}}]
    km.objects["v1/pods", ns, name] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "annotations": {M + "model": model},
                     "labels": {"batch.kubernetes.io/job-name": "train"}},
        "spec": spec or {"nodeName": "gpu-node-1", "containers": [
            {"name": "t", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": status,
    }


def rows(store: str, job: str) -> list[tuple[datetime, datetime, float]]:
    with session_scope(store) as s:
        found = s.exec(select(MeteredUsage).where(MeteredUsage.job_ref == job)).all()
        return [(r.period_start.replace(tzinfo=UTC), r.period_end.replace(tzinfo=UTC), r.chip_seconds)
                for r in found]


@pytest.mark.asyncio
async def test_a_pod_that_ended_during_a_failed_pass_is_charged_up_to_its_finish_on_the_next_pass(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node(kmock)
    t0 = NOW - timedelta(hours=10)
    pod(kmock, "train-0", gpus=8, started=t0, model="llm-x")
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    finished = NOW + timedelta(minutes=30)
    pod(kmock, "train-0", gpus=8, started=t0, model="llm-x", phase="Succeeded", finished=finished)

    # The store fails during the next pass: its transaction (the final interval included) is rolled back.
    real = ledger.model_status

    def store_went_away(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("server closed the connection unexpectedly")

    monkeypatch.setattr(ledger, "model_status", store_went_away)
    with pytest.raises(RuntimeError):
        await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=60))
    assert rows(store, "tenant-ae/Job/train#train-0") == [(t0, NOW, 8 * 10 * 3600.0)]

    # The pass after it charges the pod up to its finish: the rolled-back interval is not taken as charged.
    monkeypatch.setattr(ledger, "model_status", real)
    r = await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=120))
    assert r.pods_metered == 1
    assert rows(store, "tenant-ae/Job/train#train-0") == [(t0, finished, 8 * 10.5 * 3600.0)]
    # And once charged (committed), it is not written again.
    r = await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=180))
    assert r.pods_metered == 0


@pytest.mark.asyncio
async def test_the_threshold_crossing_event_fits_the_api_servers_1kib_note_limit_with_non_latin_names(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    customer = "阿联酋人工智能实验室" * 20  # 200 characters, 600 bytes of UTF-8
    model = "大模型" * 66  # 198 characters
    with session_scope(store) as s:
        parties.add_party(s, customer, "AE", None, ["tenant-cjk"])
    node(kmock)
    for i in range(64):  # 65,536 H100 for 60 days: 1.18e26 operations
        pod(kmock, f"llm-{i}", gpus=1024, started=NOW - timedelta(days=60), model=model, ns="tenant-cjk")
    r = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert len(r.crossings) == 1 and r.errors == []
    with session_scope(store) as s:
        (case,) = cases.list_cases(s, "open")
    (event,) = [o.raw for (res, _ns, _n), o in kmock.objects.items() if res.group == "events.k8s.io"]
    assert event["reason"] == EVENT_REASON
    note = event["note"]
    # The API server counts the note in bytes (Go's len) and refuses one over 1,024.
    assert len(note.encode("utf-8")) <= 1024
    # What the reader must act on survives the cut: the case and the command that records the inquiry.
    assert f"case {case['id']} is open" in note and f"veuctl cases resolve {case['id']}" in note


@pytest.mark.asyncio
async def test_an_accelerator_pod_metering_cannot_read_is_named_in_the_ticks_report(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    # A DRA pod (refused at admission) that runs anyway, e.g. created before the webhook was installed.
    node(kmock)
    dra = {"nodeName": "gpu-node-1", "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": "8-h100"}],
           "containers": [{"name": "t", "resources": {"claims": [{"name": "gpus"}]}}]}
    pod(kmock, "dra-0", gpus=0, started=NOW - timedelta(hours=1), model="llm-x", spec=dra)
    pod(kmock, "cpu-0", gpus=0, started=NOW - timedelta(hours=1), model="llm-x",
        spec={"nodeName": "gpu-node-1", "containers": [{"name": "t"}]})
    r = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert r.pods_metered == 0
    assert [s for s in r.skipped if s.startswith("tenant-ae/dra-0: ")] != []
    assert "resourceClaims" in next(s for s in r.skipped if s.startswith("tenant-ae/dra-0: "))
    assert not any(s.startswith("tenant-ae/cpu-0") for s in r.skipped)  # no accelerators: nothing to say


@pytest.mark.asyncio
async def test_a_pod_with_mig_slices_of_several_profiles_is_charged_for_all_of_them(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
) -> None:
    # MIG mixed strategy: one pod holds a 1g.10gb, a 3g.40gb and (in a second container) a 2g.20gb slice of
    # A100-80GB GPUs, 6/7 of a GPU in all. The ledger keeps one interval per (job, chip, start): the three
    # slices are one A100 interval, not three that each replace the one before.
    kmock.objects["v1/nodes", None, "mig-node"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "mig-node", "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}}
    spec = {"nodeName": "mig-node", "containers": [
        {"name": "t", "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1", "nvidia.com/mig-3g.40gb": "1"}}},
        {"name": "u", "resources": {"limits": {"nvidia.com/mig-2g.20gb": "1"}}}]}
    pod(kmock, "mig-0", gpus=0, started=NOW - timedelta(hours=1), model="llm-x", spec=spec)
    r = await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert r.pods_metered == 1 and r.chip_seconds == pytest.approx(6 / 7 * 3600)
    charged = rows(store, "tenant-ae/Job/train#mig-0")
    assert len(charged) == 1 and charged[0][2] == pytest.approx(6 / 7 * 3600)


def test_a_workload_being_deleted_is_not_judged_nor_a_case_opened_for_it(store: str) -> None:
    # A Job of 4,096 H100 for 8,000 hours (held for inquiry if judged), deleted while its Workload held quota:
    # Kueue's finalizer keeps the Workload a moment with a deletionTimestamp. It will never run.
    def wl(name: str, deleting: bool) -> dict[str, Any]:
        md: dict[str, Any] = {"name": name, "namespace": "tenant-ae", "uid": f"wl-{name}", "resourceVersion": "9",
                              "annotations": {M + "model": "big", M + "expected-hours": "8000"}}
        if deleting:
            md["deletionTimestamp"] = "2026-11-23T11:59:00Z"
        return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload", "metadata": md,
                "spec": {"podSets": [{"name": "main", "count": 512, "template": {"spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": H100},
                    "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}}]},
                "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                           "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}

    api = KueueApi([wl("gone", deleting=True)])
    assert AdmissionCheckController(api, store).reconcile(NOW) == [] and api.writes == []
    with session_scope(store) as s:
        assert cases.list_cases(s) == [] and cases.decisions(s) == []
    # The same Workload not being deleted is judged (and held): the skip is the deletion, nothing else.
    api = KueueApi([wl("live", deleting=False)])
    assert [d["state"] for d in AdmissionCheckController(api, store).reconcile(NOW)] == ["Retry"]
