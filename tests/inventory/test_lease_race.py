"""Leader election against an API server that enforces resourceVersion preconditions: two agents racing for
one Lease never both lead (the loser of a write race gets HTTP 409 and stands by)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from controllers.leader import LeaderElector
from tests.inventory.lease_apiserver import LeaseAPIServer

NS, NAME = "veu", "agent"


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


def race(*candidates: LeaderElector) -> list[bool]:
    """Each candidate makes one attempt at the same moment (all have read the same version first)."""
    out: list[bool] = [False] * len(candidates)

    def go(i: int) -> None:
        out[i] = candidates[i].try_acquire_or_renew()

    ts = [threading.Thread(target=go, args=(i,)) for i in range(len(candidates))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    return out


def hand_to_a_dead_holder(api: LeaseAPIServer, who: str) -> None:
    """The Lease now names ``who``, which wrote it with a renewTime long past and never renews it again."""
    with api.lock:
        lease = api.leases[(NS, NAME)]
        lease["spec"].update(holderIdentity=who, renewTime="2000-01-01T00:00:00.000000Z")
        api.version += 1
        lease["metadata"]["resourceVersion"] = str(api.version)


def test_two_agents_taking_over_an_expired_lease_at_once_produce_exactly_one_leader(
    api: LeaseAPIServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    a, b = elector(api, "a", events), elector(api, "b", events)
    # Expiry is judged on each candidate's own monotonic clock (never on the Lease's renewTime): both get one
    # fake clock here, so 20 rounds of "a lease duration passes" take no real time.
    clock = [1000.0]
    for e in (a, b):
        monkeypatch.setattr(e, "_monotonic", lambda: clock[0])
    assert a.try_acquire_or_renew() is True  # creates the Lease
    wins = {"a": 0, "b": 0}
    for i in range(20):
        hand_to_a_dead_holder(api, f"dead-{i}")
        # First sight of this record: however old its renewTime, its holder may be alive (a skewed clock).
        assert a.try_acquire_or_renew() is False and b.try_acquire_or_renew() is False
        clock[0] += 1.5  # the record stays unchanged for longer than its lease on both candidates' clocks
        api.barrier = threading.Barrier(2)  # both read the same resourceVersion before either writes
        conflicts = api.conflicts
        ra, rb = race(a, b)
        api.barrier = None
        assert ra != rb, "exactly one of two simultaneous takeovers may succeed"
        assert api.conflicts == conflicts + 1  # the loser's write was refused with 409, not ignored
        wins["a" if ra else "b"] += 1
        holder = a.api.read_namespaced_lease(NAME, NS).spec.holder_identity
        assert holder == ("a" if ra else "b")
    assert sum(wins.values()) == 20


def test_two_agents_creating_the_lease_at_once_produce_exactly_one_leader(api: LeaseAPIServer) -> None:
    events: list[str] = []
    a, b = elector(api, "a", events), elector(api, "b", events)
    api.barrier = threading.Barrier(2)  # both see 404 and both try to create
    ra, rb = race(a, b)
    api.barrier = None
    assert ra != rb and api.conflicts == 1


def test_running_agents_never_lead_at_the_same_time_even_when_the_leader_stalls(api: LeaseAPIServer) -> None:
    events: list[str] = []
    a, b = elector(api, "a", events), elector(api, "b", events)
    both = []
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
    time.sleep(1.5)
    assert events == ["a+"]  # b stands by while a renews
    # a's renewals now hang in the network for longer than its lease: it must step down (renew_deadline)
    # before b may take over (lease duration), never after.
    api.pause_writes_from["a"] = 2.0
    t0 = time.monotonic()
    while "b+" not in events and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    api.pause_writes_from.clear()
    time.sleep(1.0)
    stop.set()
    a.stop.set()
    b.stop.set()
    ta.join(10)
    tb.join(10)
    tw.join(5)
    assert events[:3] == ["a+", "a-", "b+"], events
    assert both == [], f"both agents led at once for {len(both)} samples"
