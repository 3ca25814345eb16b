"""Reminder runs on one SQLite store at once: one sends, the other finds it sent (the file lock ``<db>-notify``).

Webhooks go to a real HTTP server on 127.0.0.1 that records every delivery; the runs are real threads and real
`veuctl deadlines notify` processes on one SQLite file.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent import obligations as svc
from agent.parties import Conflict
from agent.store import session_scope
from policies.packs import PackRegistry

AS_OF = date(2025, 9, 11)  # the theft/loss notices of incidents on 2025-09-10 are due


@pytest.fixture()
def webhook() -> Iterator[tuple[str, list[list[str]]]]:
    """A slow webhook receiver (both runs are in flight together); yields its URL and each delivery's keys."""
    got: list[list[str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            got.append([d["key"] for d in body["deadlines"]])
            time.sleep(0.5)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    srv.shutdown()
    srv.server_close()


def _incidents(url: str) -> None:
    with session_scope(url) as s:
        for ref in ("INC-1", "INC-2"):
            svc.add_event(s, "incident", ref, date(2025, 9, 10), description="drive missing")


def _lock_file(db_url: str) -> Path:
    return Path(db_url.split("///", 1)[1] + "-notify")


def _sent_rows(url: str) -> list[tuple[str, bool]]:
    with session_scope(url) as s:
        return sorted((n["key"], n["ok"]) for n in svc.notifications(s))


def test_two_reminder_threads_at_once_on_sqlite_deliver_each_reminder_once(
    db_url: str, packs: PackRegistry, webhook: tuple[str, list[list[str]]],
) -> None:
    url, got = webhook
    _incidents(db_url)
    cfg = svc.NotifySettings(webhook_url=url)
    errors: list[BaseException] = []
    results: list[dict[str, Any]] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait(5)
            with session_scope(db_url) as s:
                results.append(svc.send_reminders(s, packs, AS_OF, cfg))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and got == [["theft-loss:INC-1", "theft-loss:INC-2"]], (errors, got)
    assert sorted(len(r["sent"]) for r in results) == [0, 1]  # the second found both sent
    assert _sent_rows(db_url) == [("theft-loss:INC-1", True), ("theft-loss:INC-2", True)]


def test_two_cli_notify_processes_at_once_on_sqlite_deliver_each_reminder_once(
    db_url: str, webhook: tuple[str, list[list[str]]],
) -> None:
    url, got = webhook
    _incidents(db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEU_NOTIFY_")}
    env["VEU_DATABASE_URL"] = db_url
    cmd = [sys.executable, "-m", "agent", "deadlines", "notify", "--webhook-url", url, "--as-of", "2025-09-11",
           "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert got == [["theft-loss:INC-1", "theft-loss:INC-2"]], got
    assert sorted(len(json.loads(out)["sent"]) for out, _err in outs) == [0, 1]
    assert _sent_rows(db_url) == [("theft-loss:INC-1", True), ("theft-loss:INC-2", True)]


def _lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_the_reminder_lock_is_held_until_the_run_commits_or_rolls_back(
    db_url: str, packs: PackRegistry, webhook: tuple[str, list[list[str]]],
) -> None:
    url, got = webhook
    _incidents(db_url)
    cfg = svc.NotifySettings(webhook_url=url)
    with session_scope(db_url) as s:
        svc.send_reminders(s, packs, AS_OF, cfg)
        assert not _lock_is_free(_lock_file(db_url))  # still held: what was sent is not committed yet
    assert _lock_is_free(_lock_file(db_url))
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        svc.send_reminders(s, packs, AS_OF, cfg)
        raise RuntimeError("the caller fails after the run")
    assert _lock_is_free(_lock_file(db_url)) and len(got) == 1  # the second run saw the first one's commit


def test_a_second_run_in_the_same_transaction_does_not_wait_for_itself(
    db_url: str, packs: PackRegistry, webhook: tuple[str, list[list[str]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, got = webhook
    _incidents(db_url)
    monkeypatch.setattr(svc, "NOTIFY_LOCK_WAIT_SECONDS", 0.5)
    cfg = svc.NotifySettings(webhook_url=url)
    with session_scope(db_url) as s:
        svc.send_reminders(s, packs, AS_OF, cfg)
        assert svc.send_reminders(s, packs, AS_OF, cfg)["sent"] == []
    assert len(got) == 1 and _lock_is_free(_lock_file(db_url))


def test_a_run_that_cannot_get_the_lock_in_time_sends_nothing_and_names_the_lock_file(
    db_url: str, packs: PackRegistry, webhook: tuple[str, list[list[str]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, got = webhook
    _incidents(db_url)
    monkeypatch.setattr(svc, "NOTIFY_LOCK_WAIT_SECONDS", 0.3)
    fd = os.open(_lock_file(db_url), os.O_RDWR | os.O_CREAT, 0o600)  # a stuck run holding it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(Conflict) as exc, session_scope(db_url) as s:
            svc.send_reminders(s, packs, AS_OF, svc.NotifySettings(webhook_url=url))
    finally:
        os.close(fd)
    assert str(_lock_file(db_url)) in str(exc.value) and "nothing was sent" in str(exc.value)
    assert got == [] and _sent_rows(db_url) == []
