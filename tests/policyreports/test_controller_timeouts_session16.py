"""The controllers' Kubernetes API calls time out: an API server that accepts and never answers ends a pass, fast.

The PolicyReport writer (a job on the agent's scheduler), the Kueue AdmissionCheck controller and the metering
controller are pointed, through the real kubernetes client, at a socket server that accepts every connection and
never sends a byte. With ``VEU_COLLECTOR_TIMEOUT_SECONDS=1`` (the collectors' setting) each pass must end within
seconds with a readable reason; before, each call waited for ever, holding the agent's scheduled job (and every
later run of it, ``max_instances=1``) or the controllers' loop.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi, EventsV1Api

from agent.collectors.base import TIMEOUT_ENV, ApiUnreachable
from controllers.policyreports import HeldJob, PolicyReportWriter, add_to_scheduler
from tests.silentserver import DEADLINE, SilentServer, within

T0 = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
NO_ANSWER = f"the Kubernetes API server did not answer within 1 s ({TIMEOUT_ENV})"


@pytest.fixture()
def client(silent: SilentServer) -> Iterator[ApiClient]:
    with ApiClient(Configuration(host=silent.url)) as c:
        yield c


def held(ns: str) -> HeldJob:
    """A job admitted in warn mode: its object exists, so the sync looks it up before writing the report."""
    return HeldJob(namespace=ns, name="llm-pretrain", kind="PyTorchJob", api_version="kubeflow.org/v1",
                   policy="red-flag-28", rule="HOLD_FOR_INQUIRY", message="Held: record the red-flag inquiry",
                   decided_at=T0, result="warn", operation="CREATE")


def test_policy_report_sync_against_an_api_server_that_never_answers_ends_within_seconds_with_the_reason(
    silent: SilentServer, one_second: None, client: ApiClient, caplog: pytest.LogCaptureFixture,
) -> None:
    writer = PolicyReportWriter(CustomObjectsApi(client), openreports=True)

    result, took = within(DEADLINE, lambda: writer.sync([held("tenant-a"), held("tenant-b")]))

    assert took < DEADLINE
    assert NO_ANSWER in result.error, result.error
    # Nothing is guessed: both jobs kept (not "gone"), every report left for the next sync, each saying why.
    assert result.gone == [] and result.created == result.updated == result.deleted == []
    assert set(result.skipped) == {"kubeflow.org/pytorchjobs:tenant-a", "kubeflow.org/pytorchjobs:tenant-b",
                                   "wgpolicyk8s.io/policyreports", "openreports.io/reports"}
    assert NO_ANSWER in result.skipped["kubeflow.org/pytorchjobs:tenant-a"]
    assert result.skipped["wgpolicyk8s.io/policyreports"].startswith("not asked: the Kubernetes API server did not")
    # One request and the client's retries of it: after it went unanswered the sync asked nothing more.
    assert len(silent.accepted) <= 4
    assert any("policy reports: sync cut short" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


def test_scheduled_policy_report_job_against_an_api_server_that_never_answers_runs_again_on_its_interval(
    silent: SilentServer, one_second: None, client: ApiClient, db_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
    from apscheduler.schedulers.background import BackgroundScheduler

    import controllers.policyreports as pr

    monkeypatch.setenv("VEU_POLICY_REPORTS", "true")
    # One admitted job in the store's place: the scheduled job reads the store, then asks the silent server.
    monkeypatch.setattr(pr, "held_jobs_from_store", lambda _s: [held("tenant-a")])
    executed: list[Any] = []
    errors: list[BaseException | None] = []
    twice = threading.Event()

    def on_event(ev: JobExecutionEvent) -> None:
        if ev.code == EVENT_JOB_ERROR:
            errors.append(ev.exception)
        else:
            executed.append(ev.retval)
        if len(executed) >= 2:
            twice.set()

    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    assert add_to_scheduler(scheduler, db_url, api=CustomObjectsApi(client), interval_seconds=1) is True
    scheduler.start()
    try:
        twice.wait(4 * DEADLINE)  # each run ~4 s (one request and its retries); the interval's jitter is 5 s
    finally:
        scheduler.shutdown(wait=False)

    assert errors == [] and len(executed) >= 2, (errors, executed)
    assert all(NO_ANSWER in r["error"] for r in executed[:2]), executed
    assert "Traceback" not in caplog.text


def test_kueue_reconcile_against_an_api_server_that_never_answers_ends_within_seconds_naming_the_setting(
    silent: SilentServer, one_second: None, client: ApiClient, db_url: str,
) -> None:
    from controllers.kueue import AdmissionCheckController

    ctl = AdmissionCheckController(CustomObjectsApi(client), db_url)

    with pytest.raises(ApiUnreachable, match=f"^kueue admission checks: {re.escape(NO_ANSWER)}"):
        within(DEADLINE, ctl.reconcile)


def test_meter_tick_against_an_api_server_that_never_answers_ends_within_seconds_naming_the_setting(
    silent: SilentServer, one_second: None, client: ApiClient, db_url: str,
) -> None:
    from controllers.metering import Meter

    meter = Meter(CoreV1Api(client), EventsV1Api(client), db_url)

    with pytest.raises(ApiUnreachable, match=f"^metering: nothing metered this tick: {re.escape(NO_ANSWER)}"):
        within(DEADLINE, meter.tick)


def test_controller_pass_against_an_api_server_that_never_answers_runs_both_and_fails_within_seconds(
    silent: SilentServer, one_second: None, client: ApiClient, db_url: str,
) -> None:
    from controllers.kueue import AdmissionCheckController
    from controllers.loop import controller_pass
    from controllers.metering import Meter

    meter = Meter(CoreV1Api(client), EventsV1Api(client), db_url)
    ctl = AdmissionCheckController(CustomObjectsApi(client), db_url)

    with pytest.raises(ApiUnreachable, match=r"^metering: "):  # the loop logs it and runs the next pass
        within(2 * DEADLINE, lambda: controller_pass(meter, ctl))
    assert len(silent.accepted) > 4  # the Kueue reconcile asked too, after the meter's list went unanswered


class OwnerNeverAnswers:
    """An API server that lists one Pending Workload of our check and never answers the read of its owner Job."""

    def __init__(self) -> None:
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                if "/admissionchecks" in self.path:
                    body = {"items": [{"metadata": {"name": "red-flag-28"},
                                       "spec": {"controllerName": "veu-governor.io/red-flag-28"},
                                       "status": {"conditions": [{"type": "Active", "status": "True"}]}}]}
                elif "/workloads" in self.path:
                    body = {"items": [workload()]}
                else:  # the owner's read: held open, never answered
                    server.release.wait(60)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


def workload() -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": "job-train-1a2b3", "namespace": "tenant-ae", "uid": "wl-1", "resourceVersion": "7",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "train",
                                              "uid": "job-1", "controller": True}]},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {"spec": {"containers": [
                {"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}],
                       "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}


def test_kueue_owner_read_that_never_answers_ends_the_pass_within_seconds(one_second: None, db_url: str) -> None:
    from controllers.kueue import AdmissionCheckController

    server = OwnerNeverAnswers()
    try:
        with ApiClient(Configuration(host=server.url)) as c:
            ctl = AdmissionCheckController(CustomObjectsApi(c), db_url)
            # controllers.owners.get_owner passes no timeout of its own: the controller's client gives it one.
            with pytest.raises(ApiUnreachable, match=f"^kueue admission checks: {re.escape(NO_ANSWER)}"):
                within(DEADLINE, ctl.reconcile)
    finally:
        server.close()
