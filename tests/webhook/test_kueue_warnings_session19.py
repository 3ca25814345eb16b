"""A queued Workload's check message carries the decision's warnings: its tenant sees no kubectl warning."""

from __future__ import annotations

import asyncio

import kmock
import pytest
from kubernetes.client import CustomObjectsApi

from controllers.kueue import AdmissionCheckController

from .conftest import M
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
