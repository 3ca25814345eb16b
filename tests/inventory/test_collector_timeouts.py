"""Collector API timeouts: a provider that accepts the TCP connection and never answers fails the run, fast.

Each cloud client (botocore, google-cloud-compute over REST, the kubernetes client) is pointed at a real
socket server that accepts every connection and never sends a byte. With ``VEU_COLLECTOR_TIMEOUT_SECONDS=1``
the scheduled run (``agent.scheduler.run_collector``) must end within seconds with the scope's error recorded
against the run, after a bounded number of tries; before, such a run hung for minutes or for ever, the
scheduler skipped every later run of that collector (``max_instances=1``) and shutdown waited for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlmodel import select

from agent import scheduler
from agent.collectors.base import TIMEOUT_ENV, CollectorConfigError, build, collector_timeout
from agent.collectors.config import AgentConfig, load_config
from agent.store import session_scope
from agent.store.tables.inventory import CollectorError, CollectorRun
from tests.silentserver import DEADLINE, SilentServer, within


def _errors(url: str, run_id: int) -> tuple[str, dict[str, str]]:
    """The run's recorded status and its errors by scope."""
    with session_scope(url) as s:
        run = s.get(CollectorRun, run_id)
        errs = s.exec(select(CollectorError).where(CollectorError.run_id == run_id)).all()
        assert run is not None and run.finished_at is not None
        return run.status, {e.scope: e.message for e in errs}


def test_aws_run_against_an_endpoint_that_never_answers_fails_within_seconds_with_the_error_recorded(
    silent: SilentServer, one_second: None, db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-never-logged")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(var, raising=False)
    cfg = AgentConfig(collectors={"aws": {
        "endpoint_url": silent.url, "retry_mode": "standard", "max_attempts": 1,  # one retry after the first try
        "accounts": [{"id": "123456789012", "regions": ["us-east-1"]}],
    }})

    summary, took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "aws", db_url))

    assert summary["status"] == "failed" and took < DEADLINE
    status, errs = _errors(db_url, summary["run_id"])
    assert status == "failed"
    assert "Read timeout on endpoint URL" in errs["123456789012/us-east-1"], errs
    assert "test-secret-never-logged" not in errs["123456789012/us-east-1"]
    assert len(silent.accepted) == 2  # the call and its one retry, each cut off by the timeout


def test_gcp_run_against_an_endpoint_that_never_answers_fails_within_seconds_with_the_error_recorded(
    silent: SilentServer, one_second: None, db_url: str,
) -> None:
    cfg = AgentConfig(collectors={"gcp": {
        "api_endpoint": silent.url, "anonymous": True, "projects": [{"id": "ml-prod"}],
    }})

    summary, took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "gcp", db_url))

    assert summary["status"] == "failed" and took < DEADLINE
    status, errs = _errors(db_url, summary["run_id"])
    assert status == "failed"
    assert errs["project:ml-prod"].startswith("project ml-prod: ReadTimeout: ")
    assert "read timeout=1.0" in errs["project:ml-prod"], errs
    assert len(silent.accepted) == 1  # a timeout is not a 503: the project fails, the retry deadline is not waited


def test_k8s_run_against_an_api_server_that_never_answers_fails_within_seconds_after_two_retries(
    silent: SilentServer, one_second: None, db_url: str,
) -> None:
    cfg = AgentConfig(collectors={"k8s": {"watch": False, "clusters": [{"name": "fra-1", "api_url": silent.url}]}})

    summary, took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "k8s", db_url))

    assert summary["status"] == "failed" and took < DEADLINE
    status, errs = _errors(db_url, summary["run_id"])
    assert status == "failed"
    assert errs["cluster:fra-1"].startswith("cluster fra-1: MaxRetryError: "), errs
    assert "Read timed out. (read timeout=1" in errs["cluster:fra-1"], errs
    assert len(silent.accepted) == 3  # the list and two retries (urllib3's default was three, with no backoff)


def test_namespace_label_sync_against_an_api_server_that_never_answers_fails_within_seconds(
    silent: SilentServer, one_second: None, db_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    from agent.collectors.k8s_nodes import ClusterConfig

    cluster = ClusterConfig(name="fra-1", api_url=silent.url)

    result, took = within(DEADLINE, lambda: scheduler.scheduled_namespace_sync(cluster, db_url))

    assert result is None and took < DEADLINE
    assert any("namespaces fra-1: sync failed: MaxRetryError" in r.getMessage() for r in caplog.records)


def test_timeout_setting_is_each_clients_connect_and_read_timeout_and_a_collector_override_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert collector_timeout() == 30.0
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    cfg = build("aws", {})._botocfg()  # type: ignore[attr-defined]
    assert (cfg.connect_timeout, cfg.read_timeout) == (2.5, 2.5)
    cfg = build("aws", {"read_timeout": 90})._botocfg()  # type: ignore[attr-defined]
    assert (cfg.connect_timeout, cfg.read_timeout) == (2.5, 90)


@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan", "inf", "7200"])
def test_agent_refuses_a_timeout_that_is_not_a_positive_number_of_seconds_naming_the_variable(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, value: str,
) -> None:
    cfg = AgentConfig()  # no collector configured: only the setting itself can stop the start
    monkeypatch.setenv(TIMEOUT_ENV, value)
    stop = threading.Event()
    stop.set()  # without the check the agent starts and returns at once
    with pytest.raises(CollectorConfigError, match=rf"^{TIMEOUT_ENV}: '{value}' is not a number of seconds above 0"):
        scheduler.run_agent(cfg, db_url, stop=stop)


def test_agent_run_with_a_bad_timeout_is_one_error_line_naming_the_variable(tmp_path: Path, db_url: str) -> None:
    reg = tmp_path / "reg.csv"
    reg.write_text("site,accelerator,count,owner,operator\n", encoding="utf-8")
    conf = tmp_path / "agent.yaml"
    conf.write_text(f"collectors:\n  csv:\n    files: [{reg}]\n", encoding="utf-8")
    load_config(conf)  # the file itself is fine
    env = {**os.environ, "VEU_DATABASE_URL": db_url, TIMEOUT_ENV: "30s"}
    env.pop("KUBERNETES_SERVICE_HOST", None)

    r = subprocess.run([sys.executable, "-m", "agent", "agent", "run", "--once", "--config", str(conf)],
                       capture_output=True, text=True, env=env, timeout=60)

    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "Traceback" not in r.stderr
    assert [x for x in lines if x.startswith("error:")] == [
        f"error: {TIMEOUT_ENV}: '30s' is not a number of seconds above 0 and at most 3600 (default 30)"]
