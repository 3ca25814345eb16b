"""`veuctl admission controllers` is leader-elected on a Lease of its own (session 20b).

Two controllers processes metering at once against one PostgreSQL store (the chart's single Recreate replica and
its replacement, when the old pod's node is partitioned) failed each other's passes with unique-constraint errors
on the ledger and could open cases and raise Events twice. Only the holder of Lease ``veu-governor-controllers``
now meters and runs the Kueue check; a standby takes over when the lease is released or expires; a replica that
loses the lease runs no further pass, and a pass in flight when it is lost commits nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controllers.leader import LeaderElector
from tests.inventory.kmockthread import KmockThread
from tests.inventory.lease_apiserver import LeaseAPIServer

NS = "veu-system"
LEASE = "veu-governor-controllers"
M = "compute.veu-governor.io/"


@pytest.fixture()
def km() -> Iterator[KmockThread]:
    k = KmockThread().start()
    h = k.handler
    h.objects["v1/nodes", None, "gpu-1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}
    started = (datetime.now(UTC) - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(20):
        h.objects["v1/pods", "tenant-ae", f"train-{i}"] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"train-{i}", "namespace": "tenant-ae", "uid": f"uid-train-{i}",
                         "labels": {"batch.kubernetes.io/job-name": "train"}, "annotations": {M + "model": "llm-x"}},
            "spec": {"nodeName": "gpu-1",
                     "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
            "status": {"phase": "Running", "startTime": started},
        }
    yield k
    k.stop()


@pytest.fixture()
def leases() -> Iterator[LeaseAPIServer]:
    s = LeaseAPIServer().start()
    yield s
    s.stop()


def _meter(km: KmockThread, url: str) -> Any:
    from kubernetes import client

    from controllers.metering import Meter

    cfg = client.Configuration()
    cfg.host = km.url
    api = client.ApiClient(cfg)
    return Meter(client.CoreV1Api(api), client.EventsV1Api(api), url)


def _elector(leases: LeaseAPIServer, who: str) -> LeaderElector:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = leases.url
    return LeaderElector(client.ApiClient(cfg), NS, LEASE, identity=who, lease_duration=1.0, renew_deadline=0.6,
                         retry_period=0.1)


class Recorded:
    """A meter whose every tick (and whether its elector led at the start and the end of it) is recorded."""

    def __init__(self, meter: Any, who: str, log: list[tuple[str, float]], elector: LeaderElector) -> None:
        self.meter, self.who, self.log, self.elector = meter, who, log, elector
        self.outside: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.meter, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "still_leading":
            self.meter.still_leading = value
        else:
            object.__setattr__(self, name, value)

    def tick(self) -> Any:
        if not self.elector.leading:
            self.outside.append(self.who)
        r = self.meter.tick()
        self.log.append((self.who, time.monotonic()))
        return r


def _run(meter: Any, elector: LeaderElector, stop: threading.Event, url: str) -> threading.Thread:
    from controllers.loop import run_controllers

    t = threading.Thread(target=run_controllers, args=(meter, None, 0.05),
                         kwargs={"elector": elector, "stop": stop, "store_url": url},
                         name=f"controllers-{elector.identity}", daemon=True)
    t.start()
    return t


def _wait(cond: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_two_controllers_at_once_only_the_lease_holder_meters_and_the_standby_takes_over(
    km: KmockThread, leases: LeaseAPIServer, pg_store: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ticks: list[tuple[str, float]] = []
    ea, eb = _elector(leases, "a"), _elector(leases, "b")
    ma, mb = Recorded(_meter(km, pg_store), "a", ticks, ea), Recorded(_meter(km, pg_store), "b", ticks, eb)
    stop_a, stop_b = threading.Event(), threading.Event()
    ta, tb = _run(ma, ea, stop_a, pg_store), _run(mb, eb, stop_b, pg_store)
    try:
        assert _wait(lambda: len(ticks) >= 5), "no controller metered"
        time.sleep(0.5)
        who = {w for w, _ in ticks}
        assert len(who) == 1, f"both controllers metered: {ticks}"
        (leader,) = who
        lead_stop, standby = (stop_a, "b") if leader == "a" else (stop_b, "a")
        assert "controller pass failed" not in caplog.text
        # The leader stops (SIGTERM): it releases the Lease, the standby takes over without waiting it out.
        lead_stop.set()
        (ta if leader == "a" else tb).join(5)
        stopped_at = time.monotonic()
        assert _wait(lambda: any(w == standby for w, _ in ticks)), "the standby never took over"
        assert not [t for w, t in ticks if w == leader and t > stopped_at]
        assert ma.outside == mb.outside == []  # no pass began while its replica was not leading
    finally:
        stop_a.set()
        stop_b.set()
        ta.join(5)
        tb.join(5)
    assert "controller pass failed" not in caplog.text
    assert not ta.is_alive() and not tb.is_alive()


def test_a_controller_that_loses_its_lease_runs_no_further_pass(
    km: KmockThread, leases: LeaseAPIServer, pg_store: str,
) -> None:
    ticks: list[tuple[str, float]] = []
    ea = _elector(leases, "a")
    lost: list[float] = []
    ma = Recorded(_meter(km, pg_store), "a", ticks, ea)
    stop = threading.Event()
    ea.on_stopped = lambda: lost.append(time.monotonic())
    t = _run(ma, ea, stop, pg_store)
    try:
        assert _wait(lambda: len(ticks) >= 2)
        # Its renewals stall past the renew deadline (a partitioned node): it steps down.
        leases.pause_writes_from["a"] = 3.0
        assert _wait(lambda: bool(lost)), "the leader never stepped down"
        time.sleep(0.5)
        assert not [x for _w, x in ticks if x > lost[0]], "a pass ran after the lease was lost"
        assert ma.outside == []
    finally:
        leases.pause_writes_from.clear()
        stop.set()
        t.join(10)


def test_a_pass_in_flight_when_the_lease_is_lost_commits_nothing(km: KmockThread, pg_store: str) -> None:
    from agent.store import session_scope
    from agent.store.tables.ledger import MeteredUsage
    from controllers.metering import NotLeading

    meter = _meter(km, pg_store)
    calls: list[int] = []

    def still_leading() -> bool:
        calls.append(1)
        return len(calls) < 2  # leading when the pass starts, no longer before it commits

    meter.still_leading = still_leading
    with pytest.raises(NotLeading, match="Lease"):
        meter.tick()
    from sqlmodel import select

    with session_scope(pg_store) as s:
        assert s.exec(select(MeteredUsage)).all() == []
    meter.still_leading = lambda: True
    assert meter.tick().pods_metered == 20


# ------------------------------------------------------------------------------------------------ the CLI


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, dict[str, Any]]:
    import kubernetes.config

    import agent.cli.admission as adm
    from agent.cli import app
    from agent.cli._common import run_app

    seen: dict[str, Any] = {}

    def fake_run(meter: Any, ctl: Any, interval: float, **kw: Any) -> None:
        seen.update(kw, interval=interval)

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(adm, "run_controllers", fake_run)
    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", *args])
    return run_app(app), seen


def test_the_cli_elects_on_the_named_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "veu-controllers-7f9c")
    rc, seen = _cli(monkeypatch, "--leader-election", "on", "--lease-name", "my-lease", "--lease-namespace", "ops",
                    "--lease-duration", "20", "--lease-renew-deadline", "12",
                    "--lease-retry-period", "3")
    assert rc == 0
    e = seen["elector"]
    assert (e.name, e.namespace, e.lease_duration, e.renew_deadline, e.retry_period) == ("my-lease", "ops", 20, 12, 3)
    assert e.identity.startswith("veu-controllers-7f9c_")


def test_the_default_lease_is_the_controllers_own_in_the_pods_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # in a pod: elected unless told otherwise
    monkeypatch.setenv("POD_NAMESPACE", "veu-system")
    import controllers.leader

    monkeypatch.setattr(controllers.leader, "in_cluster_namespace", lambda: "veu-system")
    rc, seen = _cli(monkeypatch)
    assert rc == 0
    e = seen["elector"]
    assert (e.name, e.namespace) == (LEASE, "veu-system")
    assert e.name != "veu-governor-inventory"  # not the agent's: both would stand by for each other
    rc, seen = _cli(monkeypatch, "--leader-election", "off")
    assert rc == 0 and seen["elector"] is None


def test_outside_a_pod_no_lease_is_taken_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rc, seen = _cli(monkeypatch)
    assert rc == 0 and seen["elector"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--lease-duration", "10", "--lease-renew-deadline", "10"],
     "--lease-renew-deadline: 10 must be less than --lease-duration (10)"),
    (["--lease-renew-deadline", "5", "--lease-retry-period", "5"],
     "--lease-retry-period: 5 must be less than --lease-renew-deadline (5)"),
    (["--lease-duration", "11", "--lease-renew-deadline", "10", "--lease-retry-period", "2"],
     "--lease-duration: 11 must exceed --lease-renew-deadline + --lease-retry-period (10 + 2 = 12)"),
    (["--lease-name", " "], "--lease-name"),
    (["--once", "--leader-election", "on"], "--once runs a single pass without a Lease"),
    (["--leader-election", "yes"], "--leader-election: 'yes' must be auto, on or off"),
])
def test_bad_lease_options_are_refused_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:
    rc, seen = _cli(monkeypatch, "--leader-election", "on", *args)
    assert rc == 2 and not seen
    assert message in capsys.readouterr().err


def test_once_runs_one_pass_without_a_lease_even_in_a_pod(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import kubernetes.config

    import controllers.leader
    import controllers.metering
    from agent.cli import app
    from agent.cli._common import run_app

    class OneMeter:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        def tick(self) -> Any:
            from types import SimpleNamespace

            return SimpleNamespace(pods_metered=3, chip_seconds=8.0, crossings=[], skipped=[], errors=[])

    def no_lease(*a: Any, **kw: Any) -> Any:
        raise AssertionError("--once took a Lease")

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(controllers.metering, "Meter", OneMeter)
    monkeypatch.setattr(controllers.leader, "LeaderElector", no_lease)
    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", "--once", "--json"])
    assert run_app(app) == 0
    assert '"pods_metered": 3' in capsys.readouterr().out


def test_once_on_postgresql_refuses_to_overlap_a_pass_in_progress(
    monkeypatch: pytest.MonkeyPatch, pg_store: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """Two passes on one store never overlap, whatever the Lease: `--once` beside a running leader (or two hosts
    outside Kubernetes) is told so instead of failing on the ledger's unique constraints."""
    import kubernetes.config

    import controllers.metering
    from agent.cli import app
    from agent.cli._common import run_app
    from controllers.loop import pass_lock

    class NeverMeter:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        def tick(self) -> Any:
            raise AssertionError("metered while another pass held the store")

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(controllers.metering, "Meter", NeverMeter)
    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", "--once", "--db", pg_store])
    with pass_lock(pg_store, "") as mine:
        assert mine
        assert run_app(app) == 1
    assert "another controllers process is running a pass on this store" in capsys.readouterr().err
