"""Controllers QA (session 21b): what a metering pass tells the cluster only once it is on record; the loop's stop.

A tick opened the crossing's case, raised its Event and counted ``veu_metering_threshold_crossings_total``
inside its transaction. When the transaction was then rolled back (the Lease lost just before the commit, the
store lost at commit), the Event on the pod named a case that was never stored and the next tick, opening the
case again, raised a second Event and counted the crossing twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from prometheus_client import REGISTRY

from agent import cases
from agent.store import session_scope
from controllers.loop import run_controllers
from controllers.metering import EVENT_REASON, Meter, NotLeading

from .conftest import M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def crossing_cluster(km: kmock.KubernetesEmulator) -> None:
    """65,536 H100 for 60 days of one Tier 2 lineage: 1.18e26 operations, past the 4E091 threshold."""
    km.objects["v1/nodes", None, "gpu-node-1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "gpu-node-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}
    started = (NOW - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(64):
        km.objects["v1/pods", "tenant-ae", f"llm-{i}"] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"llm-{i}", "namespace": "tenant-ae", "uid": f"uid-llm-{i}",
                         "annotations": {M + "model": "llm-big"}, "labels": {"batch.kubernetes.io/job-name": "llm"}},
            "spec": {"nodeName": "gpu-node-1",
                     "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1024"}}}]},
            "status": {"phase": "Running", "startTime": started},
        }


def spy_events(events: EventsV1Api) -> list[dict[str, Any]]:
    """Every Event the meter asks the API server to create (kmock keeps generateName'd Events under one key)."""
    created: list[dict[str, Any]] = []
    real = events.create_namespaced_event

    def create(ns: str, body: dict[str, Any], **kw: Any) -> Any:
        created.append(body)
        return real(ns, body, **kw)

    events.create_namespaced_event = create  # type: ignore[method-assign]
    return created


def crossings() -> float:
    return REGISTRY.get_sample_value("veu_metering_threshold_crossings_total") or 0.0


def open_cases(store: str) -> list[dict[str, Any]]:
    with session_scope(store) as s:
        return list(cases.list_cases(s, "open"))


@pytest.mark.parametrize("lost_at", [1, 2, 3, 4])
@pytest.mark.asyncio
async def test_a_lease_lost_anywhere_in_a_crossing_tick_leaves_one_event_naming_the_stored_case(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, lost_at: int,
) -> None:
    crossing_cluster(kmock)
    created = spy_events(apis[1])
    before = crossings()
    calls: list[int] = []

    def still_leading() -> bool:
        calls.append(1)
        return len(calls) < lost_at  # the Lease lost at the lost_at-th time the tick asks

    old = Meter(*apis, store)
    old.still_leading = still_leading
    try:
        await asyncio.to_thread(old.tick, NOW)
    except NotLeading:
        # Rolled back: nothing told about a case that is not stored.
        assert open_cases(store) == [] and created == [] and crossings() == before
    # The new leader's tick: the case opened once, one Event naming it, one crossing counted, whichever tick
    # opened it.
    await asyncio.to_thread(Meter(*apis, store).tick, NOW + timedelta(minutes=1))
    (case,) = open_cases(store)
    (event,) = created
    assert event["reason"] == EVENT_REASON and f"case {case['id']} is open" in event["note"]
    assert crossings() == before + 1


@pytest.mark.asyncio
async def test_a_tick_whose_commit_fails_raises_no_event_and_the_retry_raises_exactly_one(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.store

    crossing_cluster(kmock)
    created = spy_events(apis[1])
    before = crossings()
    real = agent.store.session_scope

    @contextmanager
    def lost_at_commit(url: str | None = None) -> Iterator[Any]:
        with real(url) as s:
            yield s
            raise RuntimeError("server closed the connection unexpectedly")  # rolled back, as a failed commit

    meter = Meter(*apis, store)
    monkeypatch.setattr(agent.store, "session_scope", lost_at_commit)
    with pytest.raises(RuntimeError, match="server closed"):
        await asyncio.to_thread(meter.tick, NOW)
    monkeypatch.setattr(agent.store, "session_scope", real)
    assert open_cases(store) == [] and created == [] and crossings() == before

    r = await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=1))
    (case,) = open_cases(store)
    assert len(r.crossings) == 1 and len(created) == 1 and f"case {case['id']} is open" in created[0]["note"]
    assert crossings() == before + 1
    # And the tick after it, with the case open: neither.
    r = await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=2))
    assert r.crossings == [] and len(created) == 1 and crossings() == before + 1


@pytest.mark.asyncio
async def test_pods_metered_are_counted_only_for_a_tick_that_committed(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.store

    crossing_cluster(kmock)
    pods = REGISTRY.get_sample_value("veu_metering_pods_total") or 0.0
    real = agent.store.session_scope

    @contextmanager
    def lost_at_commit(url: str | None = None) -> Iterator[Any]:
        with real(url) as s:
            yield s
            raise RuntimeError("server closed the connection unexpectedly")

    meter = Meter(*apis, store)
    monkeypatch.setattr(agent.store, "session_scope", lost_at_commit)
    with pytest.raises(RuntimeError):
        await asyncio.to_thread(meter.tick, NOW)
    monkeypatch.setattr(agent.store, "session_scope", real)
    assert (REGISTRY.get_sample_value("veu_metering_pods_total") or 0.0) == pods
    r = await asyncio.to_thread(meter.tick, NOW)
    assert r.pods_metered == 64
    assert REGISTRY.get_sample_value("veu_metering_pods_total") == pods + 64


def test_the_loop_without_an_elector_ends_when_stopped_not_after_its_interval() -> None:
    class Meter_:
        def tick(self) -> Any:
            return SimpleNamespace(pods_metered=0, chip_seconds=0.0, crossings=[], skipped=[], errors=[])

    stop = threading.Event()
    t = threading.Thread(target=run_controllers, args=(Meter_(), None, 300.0), kwargs={"stop": stop}, daemon=True)
    t.start()
    time.sleep(0.3)  # the first pass done, waiting for the next
    stop.set()
    t.join(3)
    assert not t.is_alive(), "run_controllers slept out its 300 s interval after stop was set"


def _workload(name: str, count: int, hours: str, ns: str = "tenant-ae") -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": name, "namespace": ns, "uid": f"wl-{name}", "resourceVersion": "7",
                         "annotations": {M + "model": f"{name}-model", M + "expected-hours": hours}},
            "spec": {"podSets": [{"name": "main", "count": count, "template": {"spec": {
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                       "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}


def decisions(code: str, allowed: str) -> float:
    return REGISTRY.get_sample_value("veu_admission_decisions_total",
                                     {"code": code, "allowed": allowed, "mode": "enforce"}) or 0.0


def test_the_kueue_checks_decisions_are_counted_on_the_controllers_metrics(store: str) -> None:
    # Kueue-gated jobs never reach the webhook: an operator alerting on veu_admission_decisions_total (a hold, a
    # Tier 3 refusal) saw none of them on the controllers' metrics port.
    from controllers.kueue import AdmissionCheckController

    from .conftest import KueueApi

    held, allowed, refused = (decisions("HOLD_FOR_INQUIRY", "false"), decisions("ALLOW", "true"),
                              decisions("DENY_TIER3", "false"))
    api = KueueApi([_workload("small", 2, "24"), _workload("big", 512, "8000"),
                    _workload("macau", 1, "1", ns="tenant-mo")])
    done = AdmissionCheckController(api, store).reconcile()
    assert {d["workload"]: d["code"] for d in done} == {
        "tenant-ae/small": "ALLOW", "tenant-ae/big": "HOLD_FOR_INQUIRY", "tenant-mo/macau": "DENY_TIER3"}
    assert decisions("HOLD_FOR_INQUIRY", "false") == held + 1
    assert decisions("ALLOW", "true") == allowed + 1
    assert decisions("DENY_TIER3", "false") == refused + 1
