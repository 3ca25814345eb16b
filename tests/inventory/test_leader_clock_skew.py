"""Leader election under clock skew between replicas (client-go semantics).

A replica never compares another replica's ``renewTime`` with its own wall clock: it remembers the last Lease
record it saw and when, on its own monotonic clock, it saw that record change; the lease has expired only when
a lease duration has passed on that clock without a change. So a wall clock that is hours off on either side
neither lets a standby take a live leader's lease nor keeps it from taking a dead one's. Each elector's wall
clock is skewed alone by replacing its ``_now`` (the only wall-clock source the module uses).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from controllers.leader import LeaderElector
from tests.inventory.lease_apiserver import LeaseAPIServer

NS, NAME = "veu", "agent"
HOUR = timedelta(hours=1)


@pytest.fixture()
def api() -> Iterator[LeaseAPIServer]:
    s = LeaseAPIServer().start()
    yield s
    s.stop()


def elector(api: LeaseAPIServer, who: str, events: list[str], *, lease: float = 1.0, deadline: float = 0.6,
            retry: float = 0.1) -> LeaderElector:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = api.url
    return LeaderElector(client.ApiClient(cfg), NS, NAME, identity=who, lease_duration=lease,
                         renew_deadline=deadline, retry_period=retry,
                         on_started_leading=lambda: events.append(f"{who}+"),
                         on_stopped_leading=lambda: events.append(f"{who}-"))


def skew(monkeypatch: pytest.MonkeyPatch, e: LeaderElector, by: timedelta) -> None:
    """This elector's wall clock (and only its) runs ``by`` ahead of the others (behind when negative)."""
    monkeypatch.setattr(e, "_now", lambda: datetime.now(UTC) + by)


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def holder(api: LeaseAPIServer) -> str:
    with api.lock:
        return str(api.leases[(NS, NAME)]["spec"].get("holderIdentity") or "")


@pytest.mark.parametrize("skewed", ["standby ahead", "leader behind"])
def test_standby_with_a_skewed_clock_does_not_take_a_lease_its_holder_keeps_renewing(
    api: LeaseAPIServer, monkeypatch: pytest.MonkeyPatch, skewed: str,
) -> None:
    # Either way the leader's renewTime looks an hour old to the standby: comparing it with the standby's wall
    # clock would call the lease expired and make two leaders (metering, Kueue, inventory all run twice).
    events: list[str] = []
    a, b = elector(api, "a", events), elector(api, "b", events)
    if skewed == "standby ahead":
        skew(monkeypatch, b, HOUR)
    else:
        skew(monkeypatch, a, -HOUR)
    both: list[float] = []
    ta = threading.Thread(target=a.run, daemon=True)
    tb = threading.Thread(target=b.run, daemon=True)
    ta.start()
    assert wait_for(lambda: a.leading, 5)
    tb.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:  # two and a half lease durations
        if a.leading and b.leading:
            both.append(time.monotonic())
        time.sleep(0.01)
    seen = list(events)
    a.stop.set()
    b.stop.set()
    ta.join(5)
    tb.join(5)
    assert both == [], "the standby took the lease from a leader that kept renewing it"
    assert seen == ["a+"], seen


@pytest.mark.parametrize("skewed", ["standby behind", "dead leader ahead"])
def test_standby_with_a_skewed_clock_does_not_wait_longer_than_a_lease_duration_for_a_dead_leader(
    api: LeaseAPIServer, monkeypatch: pytest.MonkeyPatch, skewed: str,
) -> None:
    # The dead leader's last renewTime looks an hour in the future to the standby; it must still take over
    # once a lease duration has passed on its own clock since it last saw the record change, and not before.
    events: list[str] = []
    a, b = elector(api, "a", events), elector(api, "b", events)
    if skewed == "standby behind":
        skew(monkeypatch, b, -HOUR)
    else:
        skew(monkeypatch, a, HOUR)
    assert a.try_acquire_or_renew() is True  # a creates the Lease, then dies without renewing it
    t0 = time.monotonic()
    assert b.try_acquire_or_renew() is False  # first sight of the record: its holder may well be alive
    while time.monotonic() - t0 < 0.8:
        assert b.try_acquire_or_renew() is False, "taken before a lease duration passed on the standby's clock"
        time.sleep(0.1)
    tb = threading.Thread(target=b.run, daemon=True)
    tb.start()
    took = wait_for(lambda: b.leading, 3)
    elapsed = time.monotonic() - t0
    lease = b.api.read_namespaced_lease(NAME, NS)
    b.stop.set()
    tb.join(5)
    assert took, "the standby never took the dead leader's lease"
    assert 1.0 <= elapsed < 3.0, elapsed
    assert events[0] == "b+"
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1


def test_released_lease_does_not_make_a_standby_wait_for_it_to_expire(
    api: LeaseAPIServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A long lease, a standby whose clock is behind and that saw the record change a moment ago: none of it
    # delays the takeover of a lease its holder released on shutdown (holderIdentity emptied).
    events: list[str] = []
    a = elector(api, "a", events, lease=10, deadline=5)
    b = elector(api, "b", events, lease=10, deadline=5)
    skew(monkeypatch, b, -HOUR)
    ta = threading.Thread(target=a.run, daemon=True)
    ta.start()
    assert wait_for(lambda: a.leading, 5)
    tb = threading.Thread(target=b.run, daemon=True)
    tb.start()
    time.sleep(0.5)  # b has seen several of a's renewals
    assert not b.leading
    a.stop.set()  # graceful shutdown: release()
    ta.join(5)
    t0 = time.monotonic()
    took = wait_for(lambda: b.leading, 2)
    elapsed = time.monotonic() - t0
    b.stop.set()
    tb.join(5)
    assert took and elapsed < 2, f"the standby waited {elapsed:.1f}s for a released lease (lease: 10s)"
    assert events[:3] == ["a+", "a-", "b+"], events
    assert holder(api) == ""  # and b released it in turn when it stopped
