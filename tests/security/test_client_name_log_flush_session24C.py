"""The refusals of a client certificate (``--client-name``) that were counted but not logged are logged when the
refusals stop: the count went out only with that CN's next line, so the last minute of a burst (a kubelet that
reconnected 500 times, then gave up) was never in the log. Now a count that no line reported within a window after
its window ended is logged on a line of its own, and whatever is still counted when the server stops is logged at
shutdown. Over real HTTPS against uvicorn serving the webhook-only app (as the session-23 tests); the limiter's
bookkeeping with a fake clock."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import server
from agent.server import RefusalLog, Unlogged
from tests.security.test_client_name_session23o import API_SERVER, Webhook

KUBELET = "system:node:gpu-node-7"
WINDOW = 0.4


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "veu.server" and "--client-name" in r.getMessage()]


@pytest.fixture()
def hook(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    monkeypatch.setattr(server, "CLIENT_NAME_LOG_SECONDS", WINDOW)
    h = Webhook(tmp_path, db_url, [API_SERVER]).start()
    try:
        yield h
    finally:
        h.stop()


def test_the_refusals_of_a_cn_not_logged_are_logged_when_its_refusals_stop(
        hook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    kubelet = hook.cert_for(KUBELET)
    with caplog.at_level(logging.WARNING, logger="veu.server"):
        for _ in range(4):
            assert not hook.admitted(kubelet)
        assert len(_lines(caplog)) == 1
        deadline = time.monotonic() + 10 * WINDOW + 5
        while len(_lines(caplog)) < 2 and time.monotonic() < deadline:  # no further connection
            time.sleep(0.05)
    lines = _lines(caplog)
    assert len(lines) == 2, lines
    assert f"'{KUBELET}'" in lines[1] and re.search(r"\b3 more\b", lines[1]), lines[1]


def test_a_cn_refused_once_has_nothing_more_to_log(hook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="veu.server"):
        assert not hook.admitted(hook.cert_for(KUBELET))
        time.sleep(3 * WINDOW + 0.3)
    assert len(_lines(caplog)) == 1, _lines(caplog)


def test_refusals_still_counted_when_the_server_stops_are_logged_at_shutdown(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, db_url: str) -> None:
    class Served:
        """uvicorn.Server standing in for the served port: a CN refused three times in one window, then a stop."""

        def __init__(self, config: Any) -> None:
            self.refusals: RefusalLog = config.http_protocol_class.refusals

        def run(self) -> None:
            for _ in range(3):
                self.refusals.note(repr(KUBELET))

    monkeypatch.setattr(server.uvicorn, "Server", Served)
    with caplog.at_level(logging.WARNING, logger="veu.server"):
        server.run_server("127.0.0.1", 0, None, None, db_url, log_level="warning")
    lines = _lines(caplog)
    assert len(lines) == 1, lines
    assert f"'{KUBELET}'" in lines[0] and re.search(r"\b2 more\b", lines[0]), lines[0]


# --- the limiter itself ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_count_is_due_a_window_after_its_window_ended_unless_a_line_reported_it() -> None:
    clock = Clock()
    log = RefusalLog(window=60, max_names=10, clock=clock)
    assert log.note("a") is not None
    assert log.note("a") is None and log.note("a") is None
    assert log.next_due() == 1000.0 + 120
    clock.now += 119
    assert log.flush() == []
    clock.now += 1
    assert log.flush() == [Unlogged("a", 2)]
    assert log.flush() == [] and log.next_due() is None
    assert log.note("a") is not None  # its next refusal is logged, with nothing more to report
    assert log.note("a") is None
    clock.now += 61
    said = log.note("a")  # the next line reported it: nothing left for the flush
    assert said is not None and said.since == 1
    clock.now += 200
    assert log.flush() == []


def test_counts_of_names_not_remembered_are_flushed_too_and_everything_at_shutdown() -> None:
    clock = Clock()
    log = RefusalLog(window=60, max_names=1, clock=clock)
    assert log.note("a") is not None
    assert log.note("b") is not None  # past the limit: one line for the other names, for a window
    assert log.note("c") is None and log.note("a") is None
    assert log.flush(final=True) == [Unlogged("a", 1), Unlogged(None, 1)]
    assert log.flush(final=True) == []
    assert log.note("d") is None
    clock.now += 121
    assert log.flush() == [Unlogged(None, 1)]
