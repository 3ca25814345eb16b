"""PolicyReports for namespaces with held jobs, written through the real Kubernetes client to kmock.

kmock is a real HTTP server emulating the Kubernetes API (objects stored, listed, patched, deleted);
the sync client runs in a worker thread because kmock serves from the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi

from controllers.policyreports import (
    OPENREPORTS,
    REPORT_NAME,
    WGPOLICY,
    HeldJob,
    PolicyReportError,
    PolicyReportWriter,
    build_report,
)

WG = "wgpolicyk8s.io/v1alpha2/policyreports"
OR = "openreports.io/v1alpha1/reports"
T0 = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)

# The result/summary shape both CRDs enforce (enums and types from the published Go types:
# wg-policy-prototypes v1alpha2 and openreports/reports-api v1alpha1), written out here as JSON Schema.
_RESULT = {
    "type": "object",
    "required": ["policy", "result", "timestamp"],
    "properties": {
        "source": {"type": "string"}, "policy": {"type": "string"}, "rule": {"type": "string"},
        "category": {"type": "string"}, "message": {"type": "string"},
        "severity": {"enum": ["critical", "high", "medium", "low", "info"]},
        "result": {"enum": ["pass", "fail", "warn", "error", "skip"]},
        "scored": {"type": "boolean"},
        "timestamp": {"type": "object", "required": ["seconds", "nanos"], "additionalProperties": False,
                      "properties": {"seconds": {"type": "integer"},
                                     "nanos": {"type": "integer", "minimum": 0, "maximum": 999999999}}},
        "resources": {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
            k: {"type": "string"} for k in ("apiVersion", "kind", "name", "namespace", "uid")}}},
        "properties": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
_SUMMARY = {"type": "object", "additionalProperties": False,
            "properties": {k: {"type": "integer", "minimum": 0} for k in ("pass", "fail", "warn", "error", "skip")}}
REPORT_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "results", "summary"],
    "properties": {"summary": _SUMMARY, "results": {"type": "array", "items": _RESULT}},
}


def held(ns: str = "tenant-a", name: str = "llm-pretrain", **kw: Any) -> HeldJob:
    base: dict[str, Any] = {
        "namespace": ns, "name": name, "kind": "PyTorchJob", "api_version": "kubeflow.org/v1",
        "uid": f"uid-{ns}-{name}", "policy": "red-flag-28", "rule": "HOLD_FOR_INQUIRY",
        "message": "Held: customer HQ outside Tier 1, estimate 3.1e26 op >= 1e26; record the red-flag inquiry",
        "decided_at": T0, "case_id": f"case-{name}", "properties": {"estimate-operations": "3.1e26"},
    }
    base.update(kw)
    return HeldJob(**base)


@pytest.fixture()
def api(kmock: kmock.KubernetesEmulator) -> Iterator[CustomObjectsApi]:
    kmock.resources[WG] = kmock.ResourceInfo(kind="PolicyReport", namespaced=True)
    config = Configuration(host=str(kmock.url).rstrip("/"))
    with ApiClient(config) as client:
        yield CustomObjectsApi(client)


def stored(kmock: kmock.KubernetesEmulator, resource: str) -> dict[str, dict[str, Any]]:
    """Live objects in the emulator: namespace -> object."""
    res = kmock.resource(resource)
    return {ns: obj.raw for (r, ns, _name), obj in kmock.objects.items() if r == res and not obj.deleted}


async def sync(writer: PolicyReportWriter, jobs: list[Any]) -> dict[str, Any]:
    return (await asyncio.to_thread(writer.sync, jobs)).as_dict()


@pytest.mark.asyncio
async def test_a_namespace_with_a_held_job_gets_a_policy_report_dashboards_can_read(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    result = await sync(PolicyReportWriter(api), [held(), held(name="ft-run", rule="DENY_TIER3", severity="critical")])
    assert result["created"] == [f"wgpolicyk8s.io/policyreports:tenant-a/{REPORT_NAME}"]
    report = stored(kmock, WG)["tenant-a"]
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["kind"] == "PolicyReport" and report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert report["summary"] == {"pass": 0, "fail": 2, "warn": 0, "error": 0, "skip": 0}
    by_rule = {r["rule"]: r for r in report["results"]}
    hold = by_rule["HOLD_FOR_INQUIRY"]
    assert hold["policy"] == "red-flag-28" and hold["source"] == "veu-governor" and hold["scored"] is True
    assert hold["resources"] == [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "llm-pretrain",
                                  "namespace": "tenant-a", "uid": "uid-tenant-a-llm-pretrain"}]
    assert hold["properties"] == {"case-id": "case-llm-pretrain", "estimate-operations": "3.1e26"}
    assert hold["timestamp"] == {"seconds": int(T0.timestamp()), "nanos": 0}
    assert by_rule["DENY_TIER3"]["severity"] == "critical"
    # Read back through the API exactly as a dashboard would.
    listed = await asyncio.to_thread(api.list_namespaced_custom_object, "wgpolicyk8s.io", "v1alpha2",
                                     "tenant-a", "policyreports")
    assert [i["metadata"]["name"] for i in listed["items"]] == [REPORT_NAME]


@pytest.mark.asyncio
async def test_reports_follow_the_held_jobs_update_unchanged_and_delete_when_released(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    writer = PolicyReportWriter(api)
    await sync(writer, [held("tenant-a"), held("tenant-b")])
    assert set(stored(kmock, WG)) == {"tenant-a", "tenant-b"}

    again = await sync(writer, [held("tenant-a"), held("tenant-b")])
    assert again["created"] == again["updated"] == [] and len(again["unchanged"]) == 2
    assert not kmock[kmock.method.PATCH], "an unchanged report is not rewritten"

    # tenant-a's case was resolved (no longer held); tenant-b holds a second job.
    later = await sync(writer, [held("tenant-b"), held("tenant-b", name="second", decided_at=T0 + timedelta(hours=1))])
    assert later["deleted"] == [f"wgpolicyk8s.io/policyreports:tenant-a/{REPORT_NAME}"]
    assert later["updated"] == [f"wgpolicyk8s.io/policyreports:tenant-b/{REPORT_NAME}"]
    assert len(kmock[kmock.method.PATCH]) == 1 and len(kmock[kmock.method.DELETE]) == 1
    reports = stored(kmock, WG)
    assert set(reports) == {"tenant-b"}
    assert [r["resources"][0]["name"] for r in reports["tenant-b"]["results"]] == ["second", "llm-pretrain"]
    assert reports["tenant-b"]["summary"]["fail"] == 2

    await sync(writer, [])
    assert stored(kmock, WG) == {}


@pytest.mark.asyncio
async def test_reports_written_by_someone_else_are_left_alone(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    foreign = {"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
               "metadata": {"name": "kyverno-pol", "namespace": "tenant-a",
                            "labels": {"app.kubernetes.io/managed-by": "kyverno"}},
               "summary": {"pass": 1}, "results": []}
    await asyncio.to_thread(api.create_namespaced_custom_object, "wgpolicyk8s.io", "v1alpha2", "tenant-a",
                            "policyreports", foreign)
    result = await sync(PolicyReportWriter(api), [])
    assert result["deleted"] == []
    assert "tenant-a" in stored(kmock, WG)


@pytest.mark.asyncio
async def test_openreports_are_written_when_enabled_and_a_missing_crd_does_not_stop_the_others(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    # openreports.io is not served yet: the writer reports why and still writes wgpolicyk8s.io.
    writer = PolicyReportWriter(api, openreports=True)
    first = await sync(writer, [held(result="warn", rule="ALLOW_WARN")])
    assert "not installed" in first["skipped"]["openreports.io/reports"]
    assert first["created"] == [f"wgpolicyk8s.io/policyreports:tenant-a/{REPORT_NAME}"]

    kmock.resources[OR] = kmock.ResourceInfo(kind="Report", namespaced=True)
    second = await sync(writer, [held(result="warn", rule="ALLOW_WARN")])
    assert second["created"] == [f"openreports.io/reports:tenant-a/{REPORT_NAME}"]
    report = stored(kmock, OR)["tenant-a"]
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["apiVersion"] == "openreports.io/v1alpha1" and report["kind"] == "Report"
    assert report["source"] == "veu-governor"
    assert report["summary"]["warn"] == 1 and report["results"][0]["scored"] is False


@pytest.mark.asyncio
async def test_a_server_error_on_one_namespace_is_reported_and_others_are_still_written(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    kmock[kmock.method.POST, kmock.namespace("tenant-bad")] << 500 << {"kind": "Status", "code": 500}
    result = await sync(PolicyReportWriter(api), [held("tenant-bad"), held("tenant-ok")])
    assert result["created"] == [f"wgpolicyk8s.io/policyreports:tenant-ok/{REPORT_NAME}"]
    assert "HTTP 500" in result["skipped"][f"wgpolicyk8s.io/policyreports:tenant-bad/{REPORT_NAME}"]


def test_results_beyond_the_cap_keep_the_newest_and_say_how_many_were_dropped() -> None:
    jobs = [held(name=f"j{i}", decided_at=T0 + timedelta(minutes=i)) for i in range(7)]
    report = build_report("tenant-a", jobs, WGPOLICY, max_results=3)
    assert [r["resources"][0]["name"] for r in report["results"]] == ["j6", "j5", "j4"]
    assert report["metadata"]["annotations"] == {"veu-governor.io/results-dropped": "4"}
    assert report["summary"]["fail"] == 3
    jsonschema.validate(build_report("tenant-a", jobs, OPENREPORTS), REPORT_SCHEMA)


@pytest.mark.parametrize(("data", "message"), [
    ({"namespace": ""}, "'namespace' is required"),
    ({"result": "blocked"}, "result 'blocked' must be one of pass, fail, warn, error, skip"),
    ({"severity": "urgent"}, "severity 'urgent'"),
    ({"decided_at": "yesterday"}, "not an ISO 8601 timestamp"),
    ({"decided_at": datetime(2026, 1, 1)}, "timezone-aware"),
    ({"cse_id": "x"}, "unknown field(s) cse_id"),
])
def test_bad_held_job_records_are_refused_naming_the_field(data: dict[str, Any], message: str) -> None:
    base = {"namespace": "t", "name": "j", "kind": "Job", "api_version": "batch/v1", "policy": "red-flag-28",
            "rule": "HOLD_FOR_INQUIRY", "message": "m", "decided_at": "2026-11-23T20:00:00Z"}
    base.update(data)
    with pytest.raises(PolicyReportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HeldJob.from_mapping(base)


@pytest.mark.asyncio
async def test_one_bad_record_writes_nothing(kmock: kmock.KubernetesEmulator, api: CustomObjectsApi) -> None:
    good = {"namespace": "t", "name": "j", "kind": "Job", "api_version": "batch/v1", "policy": "red-flag-28",
            "rule": "HOLD_FOR_INQUIRY", "message": "m", "decided_at": "2026-11-23T20:00:00Z"}
    with pytest.raises(PolicyReportError):
        await sync(PolicyReportWriter(api), [good, {**good, "result": "nope"}])
    assert stored(kmock, WG) == {}
    assert len(kmock) == 0, "validation happens before the first API call"


def test_the_chart_environment_selects_the_report_formats() -> None:
    from controllers.policyreports import from_environment

    api = CustomObjectsApi(ApiClient(Configuration(host="http://127.0.0.1:9")))
    assert from_environment(api, {"VEU_POLICY_REPORTS": "false"}) is None
    default = from_environment(api, {})
    assert default is not None and default.kinds == [WGPOLICY]
    both = from_environment(api, {"VEU_POLICY_REPORTS": "true", "VEU_OPENREPORTS": "true",
                                  "VEU_POLICY_REPORT_MAX_RESULTS": "50"})
    assert both is not None and both.kinds == [WGPOLICY, OPENREPORTS] and both.max_results == 50
    with pytest.raises(PolicyReportError, match="VEU_OPENREPORTS='maybe'"):
        from_environment(api, {"VEU_OPENREPORTS": "maybe"})
    with pytest.raises(PolicyReportError, match="VEU_POLICY_REPORT_MAX_RESULTS"):
        from_environment(api, {"VEU_POLICY_REPORT_MAX_RESULTS": "0"})
