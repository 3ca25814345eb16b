"""Leader election and the controllers' writes (session 24G): a replica writes only while it may hold the Lease.

- A renewal whose write the API server applied at once but answered late is counted from when the attempt began,
  not from when its answer arrived: the standby's expiry clock starts when it sees the write, so a leader that
  counted its deadline from the late answer led on after the standby took over.
- A leader that reads the Lease held by another replica (the Lease deleted and created again by a standby, an
  operator handing it over) has lost it: it stops leading at once, not a renew deadline later.
- The Kueue reconcile asks whether this replica still leads before each Workload it judges, as the meter asks
  before its commit: a reconcile of many Workloads that outlives the Lease stops with nothing further recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration

from controllers.leader import LeaderElector
from tests.inventory.lease_apiserver import LeaseAPIServer

from .conftest import KueueApi


@pytest.fixture()
def lease_api() -> Iterator[LeaseAPIServer]:
    s = LeaseAPIServer().start()
    yield s
    s.stop()


def _elector(api: LeaseAPIServer, who: str, events: list[str], **timing: float) -> LeaderElector:
    cfg = Configuration()
    cfg.host = api.url
    client = ApiClient(cfg)
    client.user_agent = who
    return LeaderElector(client, "veu", "agent", identity=who, **timing,
                         on_started_leading=lambda: events.append(f"{who}+"),
                         on_stopped_leading=lambda: events.append(f"{who}-"))


def _late_answers_for(api: LeaseAPIServer, plan: dict[str, float]) -> None:
    """The API server applies the next PATCH of each client named (by User-Agent) at once but answers it only after
    the given delay; that client's later PATCHes never arrive (the network to it is gone)."""
    base = api.httpd.RequestHandlerClass

    class Late(base):  # type: ignore[misc, valid-type]
        _late = 0.0

        def do_PATCH(self) -> None:
            who = str(self.headers.get("User-Agent"))
            if who in plan:
                self._late = plan.pop(who)
                super().do_PATCH()
                api.pause_writes_from[who] = 30.0
                return
            super().do_PATCH()

        def _send(self, code: int, body: dict[str, Any]) -> None:
            if self._late:
                time.sleep(self._late)
            super()._send(code, body)

    api.httpd.RequestHandlerClass = Late


def _watch_both(a: LeaderElector, b: LeaderElector, stop: threading.Event, both: list[float]) -> None:
    while not stop.is_set():
        if a.leading and b.leading:
            both.append(time.monotonic())
        time.sleep(0.005)


def test_a_renewal_answered_late_counts_its_deadline_from_when_it_was_sent_so_two_never_lead_at_once(
    lease_api: LeaseAPIServer,
) -> None:
    events: list[str] = []
    timing = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.05}
    a, b = _elector(lease_api, "a", events, **timing), _elector(lease_api, "b", events, **timing)
    both: list[float] = []
    stop = threading.Event()
    ta, tb, tw = (threading.Thread(target=x, daemon=True)
                  for x in (a.run, b.run, lambda: _watch_both(a, b, stop, both)))
    ta.start()
    time.sleep(0.3)
    tb.start()
    tw.start()
    time.sleep(0.5)
    assert events == ["a+"]
    # a's next renewal is written at once (b sees the Lease change then) but a hears back 1.2 s later, inside its
    # call's timeout; after it, nothing a writes arrives.
    plan = {"a": 1.2}
    _late_answers_for(lease_api, plan)
    t0 = time.monotonic()
    while "b+" not in events and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    time.sleep(0.5)
    stop.set()
    a.stop.set()
    b.stop.set()
    tb.join(10)
    tw.join(5)
    assert plan == {}, "a's late renewal never happened"
    assert events[:3] == ["a+", "a-", "b+"], events
    assert both == [], f"both led at once for {len(both) * 5} ms"


def test_a_leader_that_reads_the_lease_held_by_another_stops_leading_at_once(lease_api: LeaseAPIServer) -> None:
    events: list[str] = []
    # A long renew deadline: stepping down must not wait for it when the Lease plainly names another holder.
    timing = {"lease_duration": 8.0, "renew_deadline": 6.0, "retry_period": 0.05}
    a, b = _elector(lease_api, "a", events, **timing), _elector(lease_api, "b", events, **timing)
    both: list[float] = []
    stop = threading.Event()
    ta, tb, tw = (threading.Thread(target=x, daemon=True)
                  for x in (a.run, b.run, lambda: _watch_both(a, b, stop, both)))
    ta.start()
    time.sleep(0.3)
    tb.start()
    tw.start()
    time.sleep(0.3)
    assert events == ["a+"]
    # The Lease now names b (an operator handing it over, or b creating it again after `kubectl delete lease`).
    with lease_api.lock:
        lease_api.version += 1
        lease = lease_api.leases["veu", "agent"]
        lease["spec"]["holderIdentity"] = "b"
        lease["metadata"]["resourceVersion"] = str(lease_api.version)
    t0 = time.monotonic()
    while "b+" not in events and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    assert "b+" in events, events
    time.sleep(0.5)
    stop.set()
    a.stop.set()
    b.stop.set()
    ta.join(10)
    tb.join(10)
    tw.join(5)
    assert events[:3] in (["a+", "a-", "b+"], ["a+", "b+", "a-"]), events
    # Both may believe they lead for the few polls until a reads the Lease again, never for its renew deadline.
    assert len(both) * 0.005 < 0.5, f"both led at once for {len(both) * 5} ms"


# ---------------------------------------------------------------------------------------------- Kueue


def _wl(name: str) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"wl-{name}", "resourceVersion": "7"},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {"spec": {"containers": [
                {"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                       "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}


def _decisions(url: str) -> int:
    from sqlmodel import select

    from agent.store import session_scope
    from agent.store.tables.cases import AdmissionDecision

    with session_scope(url) as s:
        return len(s.exec(select(AdmissionDecision)).all())


def test_a_kueue_reconcile_that_outlives_the_lease_judges_no_further_workload(store: str) -> None:
    from controllers.kueue import AdmissionCheckController
    from controllers.metering import NotLeading

    api = KueueApi([_wl(f"w{i}") for i in range(3)])
    ctl = AdmissionCheckController(api, store)
    asked: list[bool] = []

    def still_leading() -> bool:
        asked.append(len(api.writes) < 1)  # the Lease is lost once the first Workload's check is written
        return asked[-1]

    ctl.still_leading = still_leading
    with pytest.raises(NotLeading, match="Lease"):
        ctl.reconcile()
    assert [name for name, _ in api.writes] == ["w0"]
    assert _decisions(store) == 1


def test_the_controllers_loop_gives_the_kueue_check_the_same_lease_question_as_the_meter() -> None:
    from controllers import loop

    class Elector:
        namespace, name, identity = "veu", "c", "me"
        leading = True

        def __init__(self) -> None:
            self.on_started: Any = lambda: None
            self.on_stopped: Any = lambda: None

        def run(self) -> None:
            self.on_started()

        def close(self, _t: threading.Thread) -> None:
            pass

    class Stub:
        still_leading: Any = None

        def __init__(self, stop: threading.Event) -> None:
            self.stop = stop

        def tick(self) -> Any:
            self.stop.set()
            raise RuntimeError("no cluster here")

        def reconcile(self) -> list[Any]:
            return []

    stop = threading.Event()
    meter, ctl = Stub(stop), Stub(stop)
    loop.run_controllers(meter, ctl, 0.01, elector=Elector(), stop=stop)
    assert meter.still_leading is not None
    assert ctl.still_leading is meter.still_leading
