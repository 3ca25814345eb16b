"""`veuctl admission controllers`: a failed pass (API or database error) does not end metering."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest


class _Stop(Exception):
    pass


def test_a_failed_metering_pass_is_logged_and_the_next_pass_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    import kubernetes.config

    import controllers.metering
    from agent.cli import app
    from agent.cli._common import run_app

    ticks: list[str] = []

    class FlakyMeter:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        def tick(self) -> Any:
            ticks.append("tick")
            if len(ticks) == 1:
                raise ConnectionError("apiserver: connection reset by peer")
            return SimpleNamespace(pods_metered=1, chip_seconds=8.0, crossings=[], skipped=[], errors=[])

    def sleep(_: float) -> None:
        if len(ticks) >= 3:
            raise _Stop

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(controllers.metering, "Meter", FlakyMeter)
    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", "--interval", "0.01"])
    with pytest.raises(_Stop):
        run_app(app)
    assert ticks == ["tick", "tick", "tick"]  # the first pass failed; metering went on
    assert "controller pass failed" in caplog.text and "connection reset" in caplog.text


def test_a_meter_failing_every_pass_does_not_keep_kueue_workloads_waiting_for_their_check() -> None:
    from controllers.loop import controller_pass

    class BrokenMeter:
        def tick(self) -> Any:
            raise ConnectionError("store: connection refused")

    class Checks:
        passes = 0

        def reconcile(self) -> list[dict[str, Any]]:
            self.passes += 1
            return [{"workload": "team-a/wl", "state": "Ready"}]

    ctl = Checks()
    with pytest.raises(ConnectionError, match="connection refused"):  # still a failed pass, logged by the loop
        controller_pass(BrokenMeter(), ctl)
    assert ctl.passes == 1


def test_the_meters_counters_are_served_on_the_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # The issue asks for a metric when a running lineage crosses the threshold: it lives in this process, so
    # this process must serve it.
    import socket
    import urllib.request

    import kubernetes.config

    import controllers.metering
    from agent.cli import app
    from agent.cli._common import run_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scraped: list[str] = []

    class QuietMeter:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        def tick(self) -> Any:
            controllers.metering.METERED.inc()
            return SimpleNamespace(pods_metered=1, chip_seconds=8.0, crossings=[], skipped=[], errors=[])

    def sleep(_: float) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            scraped.append(r.read().decode())
        raise _Stop

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(controllers.metering, "Meter", QuietMeter)
    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", "--interval", "0.01",
                                      "--metrics-port", str(port), "--metrics-host", "127.0.0.1"])
    with pytest.raises(_Stop):
        run_app(app)
    assert "veu_metering_pods_total" in scraped[0] and "veu_metering_threshold_crossings_total" in scraped[0]


def test_a_metrics_port_out_of_range_is_refused_naming_the_option(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import app
    from agent.cli._common import run_app

    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", "--metrics-port", "70000"])
    assert run_app(app) == 2
    assert "--metrics-port: 70000 is not a TCP port" in capsys.readouterr().err


def test_an_api_server_that_does_not_answer_is_one_log_line_per_pass_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    import kubernetes.config

    import controllers.metering
    from agent.cli import app
    from agent.cli._common import run_app
    from agent.collectors.base import ApiUnreachable

    ticks: list[str] = []

    class SilentApi:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        def tick(self) -> Any:
            ticks.append("tick")
            raise ApiUnreachable("the Kubernetes API server did not answer within 1 s (VEU_COLLECTOR_TIMEOUT_SECONDS)")

    def sleep(_: float) -> None:
        if len(ticks) >= 2:
            raise _Stop

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(controllers.metering, "Meter", SilentApi)
    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", "--interval", "0.01"])
    with pytest.raises(_Stop):
        run_app(app)
    failed = [r for r in caplog.records if "controller pass failed" in r.getMessage()]
    assert len(failed) == 2 and all(r.exc_info is None for r in failed)
    assert "did not answer within 1 s" in failed[0].getMessage()
