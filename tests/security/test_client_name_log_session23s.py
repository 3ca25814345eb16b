"""A refused client certificate (``--client-name``) is logged at most once a minute per CN (session 23).

Every connection whose certificate has none of the ``--client-name`` names was logged with a warning: any holder
of a certificate from that CA (every kubelet's, on a cluster CA) could reconnect in a loop and fill the log,
burying what else it says and the disk under it. Now a CN is named once per window; the refusals in between are
counted and the next line for that CN says how many were not logged. The memory this takes is bounded: past
``CLIENT_NAME_LOG_MAX_NAMES`` names within one window, further names share one line a window. Everything over
real HTTPS against uvicorn serving the webhook-only app, as the session-23o tests do; the limiter's bookkeeping
under threads directly.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import server
from agent.server import Refusal, RefusalLog
from tests.security.test_client_name_session23o import API_SERVER, Webhook

KUBELET = "system:node:gpu-node-7"


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "veu.server" and "--client-name" in r.getMessage()]


@pytest.fixture()
def hook(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    monkeypatch.setattr(server, "CLIENT_NAME_LOG_SECONDS", 1.5)
    h = Webhook(tmp_path, db_url, [API_SERVER]).start()
    try:
        yield h
    finally:
        h.stop()


def test_a_certificate_refused_again_and_again_is_logged_once_per_window_with_a_count(
        hook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    kubelet = hook.cert_for(KUBELET)
    with caplog.at_level(logging.WARNING, logger="veu.server"):
        for _ in range(6):
            assert not hook.admitted(kubelet)
        assert len(_refusals(caplog)) == 1, _refusals(caplog)
        assert f"'{KUBELET}'" in _refusals(caplog)[0]
        time.sleep(1.6)  # the window passes
        assert not hook.admitted(kubelet)
    lines = _refusals(caplog)
    assert len(lines) == 2, lines
    assert f"'{KUBELET}'" in lines[1] and re.search(r"\b5 more\b", lines[1]), lines[1]


def test_each_cn_has_its_own_line_and_the_named_client_still_gets_in(
        hook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="veu.server"):
        for cn in (KUBELET, "system:node:gpu-node-8", KUBELET, "jane@example.com", "system:node:gpu-node-8"):
            assert not hook.admitted(hook.cert_for(cn))
        assert hook.admitted(hook.cert_for(API_SERVER))
    lines = _refusals(caplog)
    assert [sum(f"'{cn}'" in m for m in lines) for cn in (KUBELET, "system:node:gpu-node-8", "jane@example.com")] \
        == [1, 1, 1], lines


def test_past_the_names_remembered_further_names_share_one_line_per_window(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Many certificates with many CNs: still a bounded number of lines (and of names kept) per window."""
    monkeypatch.setattr(server, "CLIENT_NAME_LOG_MAX_NAMES", 2)
    h = Webhook(tmp_path, db_url, [API_SERVER]).start()
    try:
        with caplog.at_level(logging.WARNING, logger="veu.server"):
            for i in range(6):
                assert not h.admitted(h.cert_for(f"system:node:n{i}"))
    finally:
        h.stop()
    lines = _refusals(caplog)
    assert len(lines) == 3, lines  # n0, n1, then one line for the names past the two
    assert "'system:node:n2'" in lines[2] and "other" in lines[2], lines[2]


# --- the limiter itself ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_count_of_lines_not_written_is_exact_under_threads() -> None:
    clock = Clock()
    limiter = RefusalLog(window=60, max_names=100, clock=clock)
    logged: list[tuple[str, Refusal]] = []
    lock = threading.Lock()

    def refuse(worker: int) -> None:
        for i in range(2000):
            said = limiter.note(f"cn-{(worker + i) % 20}")
            if said is not None:
                with lock:
                    logged.append((f"cn-{(worker + i) % 20}", said))

    threads = [threading.Thread(target=refuse, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(cn for cn, _ in logged) == sorted(f"cn-{i}" for i in range(20))  # one line per CN
    assert all(said == Refusal(0, 0, True) for _, said in logged)
    clock.now += 61
    again = [limiter.note(f"cn-{i}") for i in range(20)]
    assert all(a is not None for a in again)
    assert sum(a.since for a in again if a is not None) == 8 * 2000 - 20  # every refusal is a line or counted


def test_the_names_kept_stay_bounded_however_many_cns_are_refused() -> None:
    clock = Clock()
    limiter = RefusalLog(window=60, max_names=50, clock=clock)
    lines = 0
    for i in range(20_000):
        clock.now += 0.001
        if limiter.note(f"system:node:n{i}") is not None:
            lines += 1
    assert limiter.remembered() == 50
    assert lines == 51  # the 50 names remembered, then one line for all the names past them
    clock.now += 61
    # A window passed: a new name is named again, and the line counts the refusals no line reported.
    assert limiter.note("system:node:fresh") == Refusal(0, 20_000 - 51, True)
    assert limiter.remembered() == 50
