"""Fresh-eyes review of the controllers beside the webhook (session 17): the Kueue AdmissionCheck, leader
election on a Lease, and metering.

- Kueue (kubernetes-sigs/kueue apis/kueue/v1beta1/workload_types.go, AdmissionCheckState.requeueAfterSeconds):
  "If nil when State=Retry, Kueue will retry immediately." A Workload held for the inquiry was answered Retry
  with no delay: Kueue evicted it, requeued it at once and reserved its quota again (preempting others to do
  so) only to be told Retry on the next pass, for as long as the case stayed open. Kueue's own check
  controllers back off exponentially on the entry's retryCount (provisioning: base 60 s, cap 1800 s).
- Leader election (client-go bounds a whole renewal by renewDeadline): the read and the write of one renewal
  were each given the whole time left, so a leader whose reads were slow kept leading for up to twice its
  renew deadline, past the moment a standby may take the lease over.
- Metering: a pod whose node was scaled away before PodGC removed the pod lost its node's chip-model label, and
  its interval (re-charged when it ended, or by a restarted controller) was moved from the chip it ran on to
  the most capable chip a pod with no node hint could have run on (an H100 run recorded as GB300).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi

from controllers.kueue import CONTROLLER_NAME, AdmissionCheckController
from controllers.leader import LeaderElector
from tests.inventory.lease_apiserver import LeaseAPIServer

from .conftest import M

AC = "kueue.x-k8s.io/v1beta1/admissionchecks"
WL = "kueue.x-k8s.io/v1beta1/workloads"
RESERVED = {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": "Quota reserved"}


# ---------------------------------------------------------------------------------------------- Kueue


@pytest.fixture()
def kueue(kmock: kmock.KubernetesEmulator) -> Iterator[CustomObjectsApi]:
    kmock.resources[AC] = kmock.ResourceInfo(kind="AdmissionCheck", namespaced=False, subresources={"status"})
    kmock.resources[WL] = kmock.ResourceInfo(kind="Workload", namespaced=True, subresources={"status"})
    kmock.objects[AC, None, "red-flag-28"] = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "AdmissionCheck",
                                             "metadata": {"name": "red-flag-28", "generation": 1},
                                             "spec": {"controllerName": CONTROLLER_NAME}}
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CustomObjectsApi(client)


def workload(km: kmock.KubernetesEmulator, ns: str, name: str, count: int, hours: str,
             ours: dict[str, Any] | None = None) -> None:
    km.objects[WL, ns, name] = {
        "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                     "annotations": {M + "model": f"{name}-model", M + "expected-hours": hours}},
        "spec": {"queueName": "q", "podSets": [{"name": "main", "count": count, "template": {"spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "containers": [{"name": "t", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}}]},
        "status": {"conditions": [RESERVED],
                   "admissionChecks": [{"name": "red-flag-28", "state": "Pending", **(ours or {})},
                                       {"name": "provisioning", "state": "Pending"}]},
    }


def checks(km: kmock.KubernetesEmulator, ns: str, name: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in km.objects[WL, ns, name].raw["status"]["admissionChecks"]}


@pytest.mark.asyncio
async def test_a_workload_held_for_the_inquiry_is_requeued_by_kueue_after_a_growing_delay_not_at_once(
    kmock: kmock.KubernetesEmulator, kueue: CustomObjectsApi, store: str,
) -> None:
    # Three Workloads held for the inquiry, at their first, third and tenth retry (Kueue counts them in
    # retryCount when it resets the check to Pending); one that passes and one refused for good.
    workload(kmock, "tenant-ae", "held", 512, "8000")
    workload(kmock, "tenant-ae", "held-again", 512, "8000", {"retryCount": 2, "requeueAfterSeconds": 60,
                                                            "message": "Reset to Pending after eviction"})
    workload(kmock, "tenant-ae", "held-long", 512, "8000", {"retryCount": 9, "requeueAfterSeconds": 1800})
    workload(kmock, "tenant-ae", "small", 2, "24", {"retryCount": 1, "requeueAfterSeconds": 60})
    workload(kmock, "tenant-mo", "macau", 1, "1")
    ctl = AdmissionCheckController(kueue, store, retry_backoff_base_seconds=60, retry_backoff_max_seconds=1800)
    done = await asyncio.to_thread(ctl.reconcile)
    assert {d["workload"]: d["state"] for d in done} == {
        "tenant-ae/held": "Retry", "tenant-ae/held-again": "Retry", "tenant-ae/held-long": "Retry",
        "tenant-ae/small": "Ready", "tenant-mo/macau": "Rejected"}
    # Kueue keeps a Retry Workload out of admission until lastTransitionTime + requeueAfterSeconds.
    assert checks(kmock, "tenant-ae", "held")["red-flag-28"]["requeueAfterSeconds"] == 60
    assert checks(kmock, "tenant-ae", "held-again")["red-flag-28"]["requeueAfterSeconds"] == 240
    assert checks(kmock, "tenant-ae", "held-long")["red-flag-28"]["requeueAfterSeconds"] == 1800
    assert checks(kmock, "tenant-ae", "held-again")["red-flag-28"]["retryCount"] == 2  # Kueue's counter, kept
    # A delay means nothing on a check that passed or was refused (Kueue drops it there too).
    assert "requeueAfterSeconds" not in checks(kmock, "tenant-ae", "small")["red-flag-28"]
    assert "requeueAfterSeconds" not in checks(kmock, "tenant-mo", "macau")["red-flag-28"]
    # The other controller's check is left as it was.
    assert checks(kmock, "tenant-ae", "held")["provisioning"] == {"name": "provisioning", "state": "Pending"}


def test_a_retry_backoff_that_is_not_a_positive_number_of_seconds_is_refused_naming_it(store: str) -> None:
    with pytest.raises(ValueError, match="retry_backoff_max_seconds"):
        AdmissionCheckController(object(), store, retry_backoff_base_seconds=60, retry_backoff_max_seconds=30)
    with pytest.raises(ValueError, match="retry_backoff_base_seconds"):
        AdmissionCheckController(object(), store, retry_backoff_base_seconds=0)


# ---------------------------------------------------------------------------------------------- leader


@pytest.fixture()
def lease_api() -> Iterator[LeaseAPIServer]:
    s = LeaseAPIServer().start()
    yield s
    s.stop()


def _slow_reads_for(api: LeaseAPIServer, agents: dict[str, float]) -> None:
    """The API server answers the GETs of the clients named (by User-Agent) only after the given delay."""
    base = api.httpd.RequestHandlerClass

    class Slow(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:
            delay = agents.get(str(self.headers.get("User-Agent")), 0.0)
            if delay:
                time.sleep(delay)
            super().do_GET()

    api.httpd.RequestHandlerClass = Slow


def _elector(api: LeaseAPIServer, who: str, events: list[str], **timing: float) -> LeaderElector:
    cfg = Configuration()
    cfg.host = api.url
    client = ApiClient(cfg)
    client.user_agent = who
    return LeaderElector(client, "veu", "agent", identity=who, **timing,
                         on_started_leading=lambda: events.append(f"{who}+"),
                         on_stopped_leading=lambda: events.append(f"{who}-"))


def test_a_leader_whose_reads_turn_slow_steps_down_within_its_renew_deadline_before_a_standby_takes_over(
    lease_api: LeaseAPIServer,
) -> None:
    slow: dict[str, float] = {}
    _slow_reads_for(lease_api, slow)
    events: list[str] = []
    timing = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.05}
    a, b = _elector(lease_api, "a", events, **timing), _elector(lease_api, "b", events, **timing)
    both: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if a.leading and b.leading:
                both.append(time.monotonic())
            time.sleep(0.005)

    ta, tb, tw = (threading.Thread(target=x, daemon=True) for x in (a.run, b.run, watch))
    ta.start()
    time.sleep(0.3)
    tb.start()
    tw.start()
    time.sleep(0.5)
    assert events == ["a+"]
    # a's reads now take most of its renew deadline and its writes never arrive: one renewal (read + write)
    # must still end within the deadline, so a steps down before b's view of the lease expires.
    slow["a"] = 1.2
    lease_api.pause_writes_from["a"] = 6.0
    t0 = time.monotonic()
    while "b+" not in events and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    time.sleep(0.5)
    stop.set()
    a.stop.set()
    b.stop.set()
    slow.clear()
    tb.join(10)
    tw.join(5)
    assert events[:3] == ["a+", "a-", "b+"], events
    assert both == [], f"both led at once for {len(both) * 5} ms"


# ---------------------------------------------------------------------------------------------- metering


@pytest.fixture()
def core_events(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[Any, Any]]:
    from kubernetes.client import CoreV1Api, EventsV1Api

    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(km: kmock.KubernetesEmulator, name: str, started: datetime, finished: datetime | None = None) -> None:
    status: dict[str, Any] = {"phase": "Succeeded" if finished else "Running", "startTime": _ts(started)}
    if finished is not None:
        status["containerStatuses"] = [{"name": "t", "state": {"terminated": {
            "exitCode": 0, "startedAt": _ts(started), "finishedAt": _ts(finished)}}}]
    km.objects["v1/pods", "tenant-ae", name] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"uid-{name}",
                     "annotations": {M + "model": "llm-x"}, "labels": {"batch.kubernetes.io/job-name": "train"}},
        "spec": {"nodeName": "gpu-node-1", "containers": [
            {"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
        "status": status,
    }


def _usage(store: str, job: str) -> list[tuple[str, datetime, float]]:
    from sqlmodel import select

    from agent.store import session_scope
    from agent.store.tables.ledger import MeteredUsage

    with session_scope(store) as s:
        return sorted((r.accelerator, r.period_end.replace(tzinfo=UTC), r.chip_seconds)
                      for r in s.exec(select(MeteredUsage).where(MeteredUsage.job_ref == job)).all())


@pytest.mark.asyncio
async def test_a_pod_whose_node_was_scaled_away_keeps_the_chip_it_was_metered_on_when_charged_to_its_finish(
    kmock: kmock.KubernetesEmulator, core_events: tuple[Any, Any], store: str,
) -> None:
    from controllers.metering import Meter

    kmock.objects["v1/nodes", None, "gpu-node-1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "gpu-node-1", "labels": {"nvidia.com/gpu.product": H100}}}
    kmock.objects["v1/nodes", None, "cpu-node-1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "cpu-node-1", "labels": {}}}
    t0 = NOW - timedelta(hours=10)
    _pod(kmock, "train-0", t0)
    await asyncio.to_thread(Meter(*core_events, store).tick, NOW)
    ((chip, _end, _secs),) = _usage(store, "tenant-ae/Job/train#train-0")
    # The pod finishes; the autoscaler removes its idle node before PodGC removes the pod, and the metering
    # controller restarted meanwhile (nothing in memory): the pod is charged up to its finish on the chip the
    # node's label named, not on the most capable chip a pod with no node could have run on.
    finished = NOW + timedelta(minutes=30)
    _pod(kmock, "train-0", t0, finished)
    del kmock.objects["v1/nodes", None, "gpu-node-1"]
    await asyncio.to_thread(Meter(*core_events, store).tick, NOW + timedelta(hours=1))
    assert _usage(store, "tenant-ae/Job/train#train-0") == [(chip, finished, 8 * 10.5 * 3600.0)]


@pytest.mark.parametrize("server", ["silent", "closed"])
def test_a_leader_shutting_down_against_an_unreachable_api_server_stops_leading_without_hanging(
    server: str, silent: Any,
) -> None:
    """release() at shutdown read the Lease with no timeout (a black-holed API server hung the agent until
    Kubernetes killed the pod) and let a refused connection escape before the stop callback ran."""
    import socket
    import time

    from kubernetes import client

    from controllers.leader import LeaderElector
    from tests.silentserver import within

    cfg = client.Configuration()
    if server == "silent":
        cfg.host = silent.url
    else:
        with socket.create_server(("127.0.0.1", 0)) as sock:
            cfg.host = f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed again: connections are refused
    stopped: list[str] = []
    e = LeaderElector(client.ApiClient(cfg), "veu", "agent", identity="a", lease_duration=1.0, renew_deadline=0.6,
                      retry_period=0.1, on_stopped_leading=lambda: stopped.append("a-"))
    e.leading, e._last_renew = True, time.monotonic()
    within(8.0, e.release)
    assert not e.leading and stopped == ["a-"]
