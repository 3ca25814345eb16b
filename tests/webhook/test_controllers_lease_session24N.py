"""Leader election under a slow API server (session 24N): a lone leader whose every call is answered late keeps leading.

A renewal is counted from when its write (the PATCH) was sent: a standby's expiry clock cannot start before the write
exists, and counting from before the read charged the leader for the read's latency too. With each call 2.2 s late at
the chart's timings (lease 15 s, renew deadline 10 s, retry 2 s) a lone leader counting from the read flapped
leading/not leading every ~6 s. The timings must leave a standby's wait (the lease) longer than the longest a leader
may go on believing it leads after its last renewal was sent (the renew deadline and one retry period).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from controllers.leader import LeaderElector
from tests.inventory.lease_apiserver import LeaseAPIServer

CHART_VALUES = Path(__file__).resolve().parents[2] / "helm" / "veu-governor" / "values.yaml"


@pytest.fixture()
def slow_api() -> Iterator[tuple[LeaseAPIServer, list[float]]]:
    """A Lease API server that answers every call ``latency[0]`` s late (a latency of 0 until a test sets one)."""
    s = LeaseAPIServer().start()
    latency = [0.0]
    base = s.httpd.RequestHandlerClass

    class Slow(base):  # type: ignore[misc, valid-type]
        def _send(self, code: int, body: dict[str, Any]) -> None:
            time.sleep(latency[0])
            super()._send(code, body)

    s.httpd.RequestHandlerClass = Slow
    yield s, latency
    s.stop()


def _elector(api: LeaseAPIServer, events: list[str], **timing: float) -> LeaderElector:
    cfg = Configuration()
    cfg.host = api.url
    return LeaderElector(ApiClient(cfg), "veu", "agent", identity="a", **timing,
                         on_started_leading=lambda: events.append("a+"),
                         on_stopped_leading=lambda: events.append("a-"))


def test_a_lone_leader_whose_api_server_answers_every_call_late_keeps_leading(
    slow_api: tuple[LeaseAPIServer, list[float]],
) -> None:
    api, latency = slow_api
    # The chart's timings and the reviewer's 2.2 s latency, all scaled by 0.2 to keep the test short.
    scale = 0.2
    latency[0] = 2.2 * scale
    events: list[str] = []
    e = _elector(api, events, lease_duration=15 * scale, renew_deadline=10 * scale, retry_period=2 * scale)
    t = threading.Thread(target=e.run, daemon=True)
    t.start()
    # Several renewals: counted from before the read, the second renewal's PATCH had too little time left.
    time.sleep(12 * 2 * scale)
    held = e.leading
    e.stop.set()
    t.join(10)
    assert held and events[:1] == ["a+"], events
    assert "a-" not in events[:-1] and events.count("a+") == 1, f"the lone leader flapped: {events}"


@pytest.mark.parametrize(("lease", "deadline", "retry"), [(11, 10, 2), (12, 10, 2), (2.0, 1.5, 0.5)])
def test_a_lease_no_longer_than_the_renew_deadline_and_a_retry_is_refused_naming_the_options(
    lease: float, deadline: float, retry: float,
) -> None:
    with pytest.raises(ValueError) as err:
        LeaderElector(ApiClient(Configuration()), "veu", "agent", identity="a", lease_duration=lease,
                      renew_deadline=deadline, retry_period=retry)
    text = str(err.value)
    for option in ("lease_duration", "renew_deadline", "retry_period"):
        assert option in text, text
    assert f"{lease:g}" in text and f"{deadline + retry:g}" in text, text


def test_the_charts_default_lease_timings_are_accepted() -> None:
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    for part in ("agent", "controllers"):
        le = values[part]["leaderElection"]
        e = LeaderElector(ApiClient(Configuration()), "veu", "agent", identity="a",
                          lease_duration=le["leaseDurationSeconds"], renew_deadline=le["renewDeadlineSeconds"],
                          retry_period=le["retryPeriodSeconds"])
        assert e.lease_duration > e.renew_deadline + e.retry_period
