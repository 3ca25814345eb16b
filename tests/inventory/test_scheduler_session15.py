"""The agent's scheduler at its edges: bad intervals and Lease settings, shutdown while leading, failing jobs.

Config problems must be one line naming the key (exit 2 from ``veuctl agent run``), never a traceback; a
shutdown must not let a late "leading" callback start collectors; a namespace sync that cannot read its
cluster is one error line per run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent import scheduler
from agent.collectors.base import CollectorConfigError
from agent.collectors.config import load_config


def _config(tmp_path: Path, body: str) -> Path:
    f = tmp_path / "agent.yaml"
    f.write_text(body, encoding="utf-8")
    return f


def _csv(tmp_path: Path, extra: str) -> str:
    reg = tmp_path / "reg.csv"
    reg.write_text("site,accelerator,count,owner,operator\n", encoding="utf-8")
    return f"collectors:\n  csv:\n    files: [{reg}]\n{extra}"


@pytest.mark.parametrize(("extra", "key"), [
    ("    interval_seconds: 0\n", "collectors.csv.interval_seconds"),
    ("    interval_seconds: -5\n", "collectors.csv.interval_seconds"),
    ("    interval_seconds: 99999999999999\n", "collectors.csv.interval_seconds"),
    ("    jitter_seconds: -3\n", "collectors.csv.jitter_seconds"),
])
def test_agent_refuses_an_interval_or_jitter_the_scheduler_would_misread_naming_the_key(
    tmp_path: Path, db_url: str, extra: str, key: str,
) -> None:
    cfg = load_config(_config(tmp_path, _csv(tmp_path, extra)))
    stop = threading.Event()
    stop.set()  # without the check the agent starts (0 s = every second, negative = a loop) and returns
    with pytest.raises(CollectorConfigError, match=rf"^{key}: .* from [01] to 31622400"):
        scheduler.run_agent(cfg, db_url, stop=stop)


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": db_url}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.mark.parametrize(("body", "message"), [
    ("leader_election: {enabled: true, api_url: 'http://127.0.0.1:9', namespace: x, lease_duration_seconds: 5,"
     " renew_deadline_seconds: 10}\n",
     "error: leader_election.renew_deadline_seconds: 10 must be less than lease_duration_seconds (5)"),
    ("leader_election: {enabled: true, api_url: 'http://127.0.0.1:9', namespace: x, retry_period_seconds: 10}\n",
     "error: leader_election.retry_period_seconds: 10 must be less than renew_deadline_seconds (10)"),
    ("leader_election: {enabled: true, api_url: 'http://127.0.0.1:9', namespace: x, lease_duration_seconds: 11,"
     " renew_deadline_seconds: 10, retry_period_seconds: 2}\n",
     "error: leader_election.lease_duration_seconds: 11 must exceed renew_deadline_seconds + retry_period_seconds "
     "(10 + 2)"),
    ("leader_election: {enabled: true, kubeconfig: /nonexistent/kubeconfig, namespace: x}\n",
     "error: leader_election.kubeconfig: cannot load /nonexistent/kubeconfig"),
])
def test_bad_lease_settings_are_one_line_naming_the_key_not_a_traceback(
    tmp_path: Path, db_url: str, body: str, message: str,
) -> None:
    r = _cli(db_url, "agent", "run", "--config", str(_config(tmp_path, body)))
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "Traceback" not in r.stderr and lines[-1].startswith(message), r.stderr
    assert len([x for x in lines if x.startswith("error:")]) == 1


class _LateLeader:
    """Stands in for the Lease elector: its renewal in flight when shutdown begins succeeds just after the
    stop (as a real one can), so it reports "leading" once more before its loop ends."""

    def __init__(self, *_a: Any, on_started_leading: Any = None, on_stopped_leading: Any = None,
                 **_k: Any) -> None:
        self.stop = threading.Event()
        self.on_started, self.on_stopped = on_started_leading, on_stopped_leading
        self.leading = False

    def run(self) -> None:
        self.stop.wait()
        self.leading = True
        self.on_started()
        time.sleep(0.3)
        self.release()

    def release(self) -> None:
        time.sleep(0.5)  # a network round trip to the API server
        if self.leading:
            self.leading = False
            self.on_stopped()

    def close(self, election: threading.Thread) -> None:
        """As the real elector closes: stop campaigning, and wait for the loop (which releases the lease) to end."""
        self.stop.set()
        election.join(5)


def test_a_late_leading_callback_during_shutdown_starts_no_collector_run(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import controllers.leader

    runs: list[str] = []
    monkeypatch.setattr(scheduler, "run_collector", lambda _cfg, name, _url: runs.append(name))
    monkeypatch.setattr(controllers.leader, "LeaderElector", _LateLeader)
    body = _csv(tmp_path, "    jitter_seconds: 0\n") + (
        "leader_election: {enabled: true, api_url: 'http://127.0.0.1:9', namespace: x}\n")
    cfg = load_config(_config(tmp_path, body))
    stop = threading.Event()
    t = threading.Thread(target=scheduler.run_agent, args=(cfg, db_url), kwargs={"stop": stop})
    t.start()
    time.sleep(0.5)
    assert runs == []  # a follower: paused
    stop.set()  # SIGTERM
    t.join(15)
    assert not t.is_alive()
    assert runs == [], "a collector ran after shutdown began"


def test_a_namespace_sync_that_cannot_read_its_cluster_is_one_error_line_per_run(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(scheduler, "run_collector", lambda *_a: {})
    body = ("collectors:\n  k8s:\n    interval_seconds: 3600\n    jitter_seconds: 0\n    clusters:\n"
            "      - {name: fra-1, kubeconfig: /nonexistent/kubeconfig, customer_label: example.test/customer}\n")
    cfg = load_config(_config(tmp_path, body))
    caplog.set_level(logging.INFO)
    agent = scheduler.Agent(cfg, db_url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(("namespaces:fra-1" in r.getMessage() and "executed" in
                                                      r.getMessage()) or r.exc_info for r in caplog.records):
            time.sleep(0.05)
    finally:
        agent.shutdown()
    assert [r for r in caplog.records if r.exc_info] == []  # was APScheduler's traceback every interval
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["namespaces fra-1: sync failed: ConfigException: Invalid kube-config file. "
                      "No configuration found."], errors


def test_two_agents_on_one_postgresql_store_never_run_the_same_collector_at_once(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.inventory

    running: list[int] = []
    most = [0]
    lock = threading.Lock()

    class _Summary:
        run_id, status, observed = 1, "ok", 0

        def as_dict(self) -> dict[str, Any]:
            return {"status": "ok"}

    def slow_sync(_collector: Any, _url: str | None) -> _Summary:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        time.sleep(0.6)
        with lock:
            running.pop()
        return _Summary()

    monkeypatch.setattr(agent.inventory, "sync", slow_sync)
    cfg = load_config(_config(tmp_path, _csv(tmp_path, "")))  # no Lease: two hosts outside Kubernetes
    out: list[dict[str, Any]] = []
    start = threading.Barrier(2)

    def agent_run() -> None:
        start.wait(5)
        out.append(scheduler.run_collector(cfg, "csv", pg_url))

    threads = [threading.Thread(target=agent_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert most[0] == 1, "both agents ran the csv collector at the same time"
    assert sorted(o["status"] for o in out) == ["ok", "skipped"]
    assert scheduler.run_collector(cfg, "csv", pg_url)["status"] == "ok"  # the lock was given back
