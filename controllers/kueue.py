"""Kueue AdmissionCheck controller: queued workloads wait for the red-flag-28 inquiry instead of being rejected.

Wiring (k8s-conventions.md §4): create an ``AdmissionCheck`` (kueue.x-k8s.io/v1beta1, cluster-scoped) with
``spec.controllerName: veu-governor.io/red-flag-28`` and list it in the ClusterQueue's
``spec.admissionChecks``. This controller marks such checks ``Active`` and, for each Workload whose
``status.admissionChecks`` holds one of them in state ``Pending``, evaluates the Workload exactly as the
webhook would (same store, records and cases) and sets the check's state:

- ``Ready`` when the decision admits (ALLOW, ALLOW_AFTER_INQUIRY, EXEMPT; warn/audit modes);
- ``Retry`` when the job is held for inquiry (``HOLD_FOR_INQUIRY``): Kueue releases the quota and
  requeues it with backoff, so it starts once the case is resolved — nobody resubmits anything;
- ``Rejected`` for refusals no inquiry can cure (``DENY_TIER3``, ``DENY_UNKNOWN_CUSTOMER``,
  ``DENY_INVALID``): Kueue deactivates the Workload.

Gate a job kind either with the webhook or with this check, not both (the webhook would reject the job
before Kueue ever queues it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("veu.kueue")

CONTROLLER_NAME = "veu-governor.io/red-flag-28"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta1"
READY_CODES = frozenset({"ALLOW", "ALLOW_AFTER_INQUIRY", "EXEMPT"})
RETRY_CODES = frozenset({"HOLD_FOR_INQUIRY"})


def check_state(allowed: bool, code: str) -> str:
    """The AdmissionCheck state for a decision."""
    if allowed or code in READY_CODES:
        return "Ready"
    return "Retry" if code in RETRY_CODES else "Rejected"


def _ts(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AdmissionCheckController:
    """Reconciles AdmissionChecks and Workloads through ``kubernetes.client.CustomObjectsApi``."""

    def __init__(self, custom: Any, database_url: str | None, *, cluster: str = "",
                 controller_name: str = CONTROLLER_NAME) -> None:
        self.api, self.database_url, self.cluster, self.controller_name = custom, database_url, cluster, \
            controller_name

    def our_checks(self, now: datetime | None = None) -> set[str]:
        """Names of the AdmissionChecks this controller owns, marking each Active."""
        now = now or datetime.now(UTC)
        names: set[str] = set()
        listed = self.api.list_cluster_custom_object(GROUP, VERSION, "admissionchecks")
        for ac in listed.get("items", []):
            if (ac.get("spec") or {}).get("controllerName") != self.controller_name:
                continue
            name = ac["metadata"]["name"]
            names.add(name)
            conds = (ac.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Active" and c.get("status") == "True" for c in conds):
                continue
            others = [c for c in conds if c.get("type") != "Active"]
            active = {"type": "Active", "status": "True", "reason": "Active",
                      "message": "veu-governor red-flag-28 check is active", "lastTransitionTime": _ts(now),
                      "observedGeneration": ac["metadata"].get("generation", 1)}
            self.api.patch_cluster_custom_object_status(GROUP, VERSION, "admissionchecks", name,
                                                        {"status": {"conditions": [*others, active]}})
        return names

    def reconcile(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Evaluate every Workload with one of our checks Pending; return what was set."""
        from agent.cases import evaluate_review
        from agent.packs import registry
        from agent.store import session_scope

        now = now or datetime.now(UTC)
        checks = self.our_checks(now)
        if not checks:
            return []
        done: list[dict[str, Any]] = []
        items = self.api.list_cluster_custom_object(GROUP, VERSION, "workloads").get("items", [])
        for wl in items:
            states = (wl.get("status") or {}).get("admissionChecks") or []
            pending = [s for s in states if s.get("name") in checks and s.get("state") == "Pending"]
            if not pending:
                continue
            md = wl.get("metadata") or {}
            ns, name = md.get("namespace", ""), md.get("name", "")
            # The Workload is the job here (its Job was not gated): its owner is not a reason to pass it on.
            own = {k: v for k, v in md.items() if k != "ownerReferences"}
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": str(md.get("uid") or f"{ns}/{name}")[:128], "operation": "CREATE", "namespace": ns,
                "object": {**wl, "metadata": own, "apiVersion": f"{GROUP}/{VERSION}", "kind": "Workload"},
                "userInfo": {"username": f"controller:{self.controller_name}"}, "dryRun": False}}
            try:
                with session_scope(self.database_url) as s:
                    out = evaluate_review(s, registry(), review, cluster=self.cluster,
                                          actor="controller:kueue-admissioncheck", now=now)
            except Exception as exc:  # leave the check Pending: Kueue keeps the workload queued
                log.error("workload %s/%s: evaluation failed: %s", ns, name, exc)
                continue
            state = check_state(out.allowed, out.code)
            msg = f"{out.code}: {out.message}"[:1000]
            new_states = [
                ({**s, "state": state, "message": msg, "lastTransitionTime": _ts(now)}
                 if s.get("name") in checks and s.get("state") == "Pending" else s)
                for s in states
            ]
            self.api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "workloads", name,
                                                           {"status": {"admissionChecks": new_states}})
            done.append({"workload": f"{ns}/{name}", "state": state, "code": out.code, "case_id": out.case_id})
        return done


def pending_checks(wl: Mapping[str, Any], checks: set[str]) -> list[str]:
    states = (wl.get("status") or {}).get("admissionChecks") or []
    return [s["name"] for s in states if s.get("name") in checks and s.get("state") == "Pending"]
