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
    monkeypatch.setattr(sys, "argv", ["veuctl", "admission", "controllers", "--interval", "0"])
    with pytest.raises(_Stop):
        run_app(app)
    assert ticks == ["tick", "tick", "tick"]  # the first pass failed; metering went on
    assert "controller pass failed" in caplog.text and "connection reset" in caplog.text
