"""A collector run whose process was killed is marked interrupted by the next run of that collector, not 6 h later.

Stale runs were recognised by host name and pid: a pod restarted after a SIGKILL or an OOM kill has a new host
name (a restarted container the same pid), so its run stayed ``running`` for 6 hours. Now, on PostgreSQL, a run's
process holds a lock of its own for the run (released with its connection when the process dies): a run whose lock
nobody holds is over. On SQLite (one agent process on one host) a run an earlier process started is over. Either
way it is marked ``aborted`` at once, with the error "interrupted: the agent stopped during the run" and the
``inventory.run.finish`` audit entry a finished run has; a run whose process still holds its lock is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlmodel import select

from agent import inventory, scheduler
from agent.audit import verify_chain
from agent.collectors.config import AgentConfig
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import utcnow
from agent.store.tables.inventory import CollectorError, CollectorRun

OLD_POD = "veu-agent-7d9f8c-x2k4q"  # the host name of the pod the killed agent ran in; its replacement's differs


def _config(tmp_path: Path) -> AgentConfig:
    reg = tmp_path / "register.csv"
    reg.write_text("site,accelerator,count,owner,operator\n", encoding="utf-8")
    return AgentConfig(collectors={"csv": {"files": [str(reg)]}})


def _left_running(url: str, *, host: str, pid: int, minutes_ago: float = 2, source: str = "csv") -> int:
    """A run row as a killed process leaves it: started, never finished."""
    with session_scope(url) as s:
        run = CollectorRun(source=source, started_at=utcnow() - timedelta(minutes=minutes_ago), host=host, pid=pid)
        s.add(run)
        s.flush()
        return int(run.id or 0)


def _run(url: str, run_id: int) -> tuple[CollectorRun, list[str], list[dict[str, object]]]:
    """The run, its errors and its audit entries (payloads)."""
    with session_scope(url) as s:
        run = s.get(CollectorRun, run_id)
        assert run is not None
        errs = [e.message for e in s.exec(select(CollectorError).where(CollectorError.run_id == run_id))]
        audit = [json.loads(a.payload) | {"action": a.action} for a in
                 s.exec(select(AuditEntry).where(AuditEntry.subject == f"collector_run/{run_id}"))]
        return run, errs, audit


def _assert_interrupted(url: str, run_id: int, why: str) -> None:
    run, errs, audit = _run(url, run_id)
    assert run.status == "aborted" and run.finished_at is not None
    assert len(errs) == 1 and errs[0].startswith("interrupted: the agent stopped during the run ("), errs
    assert why in errs[0], errs
    finished = [(a["status"], a["error"]) for a in audit if a["action"] == "inventory.run.finish"]
    assert finished == [("aborted", errs[0])]  # as a run that ended has, once
    with session_scope(url) as s:
        assert verify_chain(s).ok


@pytest.fixture()
def agent_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is the agent that replaced the killed one: it started after the killed run began."""
    monkeypatch.setattr(inventory, "PROCESS_STARTED", utcnow() - timedelta(minutes=1))


# --- SQLite: one agent process, so a run an earlier process started is over --------------------------------


def test_sqlite_run_left_running_in_a_pod_since_replaced_is_interrupted_by_the_next_run(
    db_url: str, tmp_path: Path, agent_restarted: None, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    killed = _left_running(db_url, host=OLD_POD, pid=1)

    summary = scheduler.run_collector(_config(tmp_path), "csv", db_url)

    assert summary["status"] == "ok"
    _assert_interrupted(db_url, killed, f"started by {OLD_POD} pid 1 before this agent process started")
    # Shown where runs are listed.
    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", "inventory", "runs", "--source", "csv", "--json"])
    assert run_app(app) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[killed]["status"] == "aborted"
    assert listed[killed]["errors"][0]["message"].startswith("interrupted: the agent stopped during the run")
    assert listed[summary["run_id"]]["status"] == "ok"


def test_sqlite_run_left_by_a_restarted_container_with_the_same_pid_is_interrupted_by_the_next_run(
    db_url: str, tmp_path: Path, agent_restarted: None,
) -> None:
    # A restarted container keeps the pod's host name and numbers its processes alike (the agent is pid 1 again).
    killed = _left_running(db_url, host=socket.gethostname(), pid=os.getpid())

    scheduler.run_collector(_config(tmp_path), "csv", db_url)

    _assert_interrupted(db_url, killed, "before this agent process started")


def test_sqlite_run_of_a_live_process_on_this_host_is_not_touched(db_url: str, tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = _left_running(db_url, host=socket.gethostname(), pid=live.pid, minutes_ago=0)
        # Another host writing this file, started after this process: nothing says it is over (6 h later it is).
        elsewhere = _left_running(db_url, host="another-host", pid=4242, minutes_ago=0)

        scheduler.run_collector(_config(tmp_path), "csv", db_url)

        for run_id in (running, elsewhere):
            run, errs, _audit = _run(db_url, run_id)
            assert (run.status, run.finished_at, errs) == ("running", None, [])
    finally:
        live.kill()
        live.wait(10)


def test_agent_start_interrupts_runs_of_every_collector_an_earlier_process_left_running(
    db_url: str, tmp_path: Path, agent_restarted: None,
) -> None:
    # gcp is no longer configured: it has no next run to notice its killed one.
    killed = _left_running(db_url, host=OLD_POD, pid=1, source="gcp")
    stop = threading.Event()
    stop.set()  # start, then stop at once

    scheduler.run_agent(AgentConfig(), db_url, stop=stop)

    _assert_interrupted(db_url, killed, f"started by {OLD_POD} pid 1")


# --- PostgreSQL: a run's process holds the run's lock; free, nobody runs it --------------------------------


HOLDER = """
import sys, time
from agent.inventory import _holding_the_run, start_run
with _holding_the_run(sys.argv[1]) as hold:
    print(start_run("csv", sys.argv[1], hold), flush=True)
    time.sleep(120)
"""


def _lock_free(url: str, run_id: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (inventory.run_lock_key(run_id),)).fetchone()
        if got and got[0]:
            conn.execute("SELECT pg_advisory_unlock(%s)", (inventory.run_lock_key(run_id),))
            return True
    return False


def test_pg_run_left_running_by_a_process_that_no_longer_holds_its_lock_is_interrupted_by_the_next_run(
    pg_url: str, tmp_path: Path,
) -> None:
    # Started two minutes ago in a pod since replaced (another host name): nobody holds its lock.
    killed = _left_running(pg_url, host=OLD_POD, pid=1)

    summary = scheduler.run_collector(_config(tmp_path), "csv", pg_url)

    assert summary["status"] == "ok"
    _assert_interrupted(pg_url, killed, f"{OLD_POD} pid 1 no longer holds the run's lock")


def test_pg_run_whose_process_holds_its_lock_is_not_touched_until_the_process_is_killed(
    pg_url: str, tmp_path: Path,
) -> None:
    cfg = _config(tmp_path)
    scheduler.run_collector(cfg, "csv", pg_url)  # migrate the store before another process uses it
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        running = int(proc.stdout.readline())

        scheduler.run_collector(cfg, "csv", pg_url)  # the other process is running its run: left alone

        run, errs, audit = _run(pg_url, running)
        assert (run.status, run.finished_at, errs) == ("running", None, [])
        assert [a["action"] for a in audit] == ["inventory.run.start"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 10
    while not _lock_free(pg_url, running) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server ends the dead client's session (and its locks) as it sees the socket close

    scheduler.run_collector(cfg, "csv", pg_url)

    _assert_interrupted(pg_url, running, "no longer holds the run's lock")
