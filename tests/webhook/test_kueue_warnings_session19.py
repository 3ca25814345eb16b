"""A queued Workload's check message carries the decision's warnings: its tenant sees no kubectl warning."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
import pytest
from kubernetes.client import CustomObjectsApi

from controllers.kueue import AdmissionCheckController

from .conftest import M
from .test_kueue_errors_session18 import no_cluster  # noqa: F401  (the fixture)
from .test_kueue_versions_session19 import WL, checks, v1beta2, workload  # noqa: F401  (the fixture)


@pytest.mark.asyncio
async def test_a_misspelt_annotation_on_a_queued_workload_is_named_in_its_check_message(
    kmock: kmock.KubernetesEmulator, v1beta2: CustomObjectsApi, store: str,  # noqa: F811
) -> None:
    workload(kmock, "tenant-ae", "small", 2, "24")
    kmock.objects[WL, "tenant-ae", "small"].raw["metadata"]["annotations"][M + "modle"] = "x"
    ctl = AdmissionCheckController(v1beta2, store, kueue_api_version="v1beta2")
    await asyncio.to_thread(ctl.reconcile)
    ours = checks(kmock, "tenant-ae", "small")["red-flag-28"]
    assert ours["state"] == "Ready", ours
    assert ours["message"].startswith("ALLOW: ") and f"Warning: ignored annotation {M}modle" in ours["message"]


@pytest.mark.parametrize("error", ["kueue", "api"])
def test_a_single_controller_pass_that_cannot_reach_kueue_ends_with_one_line_not_a_traceback(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    error: str,
) -> None:
    import agent.cli.admission as cli
    from agent.collectors.base import ApiUnreachable
    from controllers.kueue import KueueNotServed

    def fail(*_a: Any) -> Any:
        if error == "kueue":
            raise KueueNotServed("the API server serves no kueue.x-k8s.io API group: Kueue is not installed")
        raise ApiUnreachable("kubernetes: 127.0.0.1:1 did not answer within 10s")

    monkeypatch.setattr(cli, "controller_pass", fail)
    r = veuctl("admission", "controllers", "--once", "--kueue")
    assert r.returncode == 1, r
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
