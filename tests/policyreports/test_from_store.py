"""Held jobs are read from the store's admission decisions and cases, then reported (PostgreSQL + kmock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi

from agent.store.db import session_scope
from agent.store.tables.cases import AdmissionDecision, RedFlagCase
from controllers.policyreports import PolicyReportWriter, held_jobs_from_store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _decision(ref: str, code: str, *, allowed: bool = False, mode: str = "enforce", case: int | None = None,
              minutes: int = 0) -> AdmissionDecision:
    ns, kind, name = ref.split("/")
    return AdmissionDecision(
        uid=f"uid-{ref}-{minutes}", decided_at=T0 + timedelta(minutes=minutes), as_of="2026-11-23", namespace=ns,
        kind=kind, name=name, operation="CREATE", job_ref=ref, customer_name="Acme Cloud Ltd",
        model_key="acme/frontier-1", code=code, allowed=allowed, mode=mode, chips=4096.0,
        lineage_operations=3.1e26, case_id=case, message=f"{code}: record the red-flag inquiry for {name}",
    )


def _seed(url: str) -> None:
    with session_scope(url) as s:
        open_case = RedFlagCase(customer_name="Acme Cloud Ltd", model_key="acme/frontier-1", status="open")
        resolved = RedFlagCase(customer_name="Acme Cloud Ltd", model_key="acme/other", status="resolved",
                               export_intent=False)
        s.add(open_case)
        s.add(resolved)
        s.flush()
        s.add_all([
            _decision("tenant-a/PyTorchJob/pretrain", "HOLD_FOR_INQUIRY", case=open_case.id),
            # Held, then admitted once the inquiry was recorded: no longer held.
            _decision("tenant-a/JobSet/resubmitted", "HOLD_FOR_INQUIRY", case=open_case.id),
            _decision("tenant-a/JobSet/resubmitted", "ALLOW_AFTER_INQUIRY", allowed=True, minutes=30),
            # Its case was resolved and the job not resubmitted: nothing left to show.
            _decision("tenant-a/Job/old-run", "HOLD_FOR_INQUIRY", case=resolved.id),
            _decision("tenant-b/RayJob/d5-run", "DENY_TIER3"),
            _decision("tenant-c/Job/warned", "HOLD_FOR_INQUIRY", allowed=True, mode="warn", case=open_case.id),
            _decision("tenant-c/Job/small", "ALLOW", allowed=True),
        ])
        s.flush()
        # Decided later by another replica, whose block of ids is lower: the later decision still counts.
        s.add_all([
            AdmissionDecision(**{**_decision("tenant-d/Job/replicas", "ALLOW_AFTER_INQUIRY", allowed=True,
                                             minutes=30).model_dump(), "id": 1_000}),
            AdmissionDecision(**{**_decision("tenant-d/Job/replicas", "HOLD_FOR_INQUIRY", case=open_case.id
                                             ).model_dump(), "id": 2_000}),
        ])


@pytest.mark.postgres
def test_only_refusals_still_standing_are_held(pg_url: str) -> None:
    _seed(pg_url)
    with session_scope(pg_url) as s:
        held = held_jobs_from_store(s)
    by_name = {h.name: h for h in held}
    assert set(by_name) == {"pretrain", "d5-run", "warned"}
    assert by_name["pretrain"].policy == "red-flag-28" and by_name["pretrain"].result == "fail"
    assert by_name["pretrain"].case_id and by_name["pretrain"].properties["estimate-operations"] == "3.1e+26"
    assert by_name["d5-run"].rule == "DENY_TIER3" and by_name["d5-run"].severity == "critical"
    assert by_name["d5-run"].policy == "tier3-destinations"
    assert by_name["warned"].result == "warn" and by_name["warned"].properties["mode"] == "warn"
    assert all(h.decided_at.tzinfo is not None for h in held)


def test_sqlite_store_gives_the_same_answer(db_url: str) -> None:
    _seed(db_url)
    with session_scope(db_url) as s:
        assert sorted(h.name for h in held_jobs_from_store(s)) == ["d5-run", "pretrain", "warned"]


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_store_to_policy_reports_end_to_end(pg_url: str, kmock: kmock.KubernetesEmulator) -> None:
    _seed(pg_url)
    kmock.resources["wgpolicyk8s.io/v1alpha2/policyreports"] = kmock.ResourceInfo(kind="PolicyReport", namespaced=True)

    def run() -> dict[str, Any]:
        with session_scope(pg_url) as s, ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as api:
            return PolicyReportWriter(CustomObjectsApi(api)).sync(held_jobs_from_store(s)).as_dict()

    result = await asyncio.to_thread(run)
    assert sorted(result["created"]) == [f"wgpolicyk8s.io/policyreports:{ns}/veu-governor"
                                         for ns in ("tenant-a", "tenant-b", "tenant-c")]
    res = kmock.resource("wgpolicyk8s.io/v1alpha2/policyreports")
    reports = {ns: o.raw for (r, ns, _n), o in kmock.objects.items() if r == res}
    assert reports["tenant-a"]["summary"]["fail"] == 1
    assert reports["tenant-c"]["summary"] == {"pass": 0, "fail": 0, "warn": 1, "error": 0, "skip": 0}
    (d5,) = reports["tenant-b"]["results"]
    assert d5["resources"] == [{"kind": "RayJob", "name": "d5-run", "namespace": "tenant-b"}]


@pytest.mark.asyncio
async def test_the_agent_scheduler_job_reconciles_reports_from_the_store(
    db_url: str, kmock: kmock.KubernetesEmulator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from controllers.policyreports import add_to_scheduler

    _seed(db_url)
    kmock.resources["wgpolicyk8s.io/v1alpha2/policyreports"] = kmock.ResourceInfo(kind="PolicyReport", namespaced=True)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    scheduler = BackgroundScheduler(timezone=UTC)
    assert add_to_scheduler(scheduler, db_url) is False, "outside a pod the agent runs without reports"
    monkeypatch.setenv("VEU_POLICY_REPORTS", "true")
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as api:
        assert add_to_scheduler(scheduler, db_url, api=CustomObjectsApi(api)) is True
        job = scheduler.get_job("policy-reports")
        result = await asyncio.to_thread(job.func)
    assert len(result["created"]) == 3
    monkeypatch.setenv("VEU_POLICY_REPORTS", "false")
    assert add_to_scheduler(BackgroundScheduler(timezone=UTC), db_url, api=CustomObjectsApi()) is False
