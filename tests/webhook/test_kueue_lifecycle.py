"""The AdmissionCheck is answered only while Kueue waits for it: quota reserved, not evicted, not finished.

Kueue runs admission checks after it reserves quota. On ``Retry`` it resets the checks to ``Pending``, marks
the Workload ``Evicted`` and releases the quota; a ``Retry`` written in between (or while the Workload waits
in the queue without quota) is never cleared, and the Workload is never admitted — not even after the
inquiry is answered (kubernetes-sigs/kueue KEP-3258, "What happens if the second AC updates its state at
the wrong time?"). Kueue's own check controllers skip such Workloads the same way.
"""

from __future__ import annotations

from typing import Any

import pytest

from controllers.kueue import AdmissionCheckController

from .conftest import KueueApi


def _wl(name: str, conditions: list[dict[str, str]]) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"wl-{name}", "resourceVersion": "7"},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {"spec": {"containers": [
                {"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}]},
            "status": {"conditions": conditions, "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}


RESERVED = {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}


@pytest.mark.parametrize(("conditions", "answered"), [
    ([RESERVED], True),
    ([], False),  # queued, no quota yet: Kueue has not asked
    ([{"type": "QuotaReserved", "status": "False", "reason": "Pending"}], False),
    ([RESERVED, {"type": "Evicted", "status": "True", "reason": "AdmissionCheck"}], False),  # being requeued
    ([RESERVED, {"type": "Finished", "status": "True", "reason": "Succeeded"}], False),
])
def test_the_check_is_answered_only_while_kueue_holds_quota_for_the_workload(
    store: str, conditions: list[dict[str, str]], answered: bool,
) -> None:
    api = KueueApi([_wl("w", conditions)])
    done = AdmissionCheckController(api, store).reconcile()
    assert bool(done) is answered and bool(api.writes) is answered
